"""`apprenti ask` and `apprenti chat`: the answer pipeline from a terminal."""

from __future__ import annotations

import typer
from rich.markdown import Markdown
from rich.panel import Panel

from bot.cli.common import bad_input, console, print_json, runtime


def _show(answer) -> None:
    title = f"mode {answer.mode} · adapter {answer.adapter or 'base model'} · {answer.latency_ms} ms"
    console.print(Panel(Markdown(answer.answer or "_(empty answer)_"), title=title, title_align="left"))
    for i, source in enumerate(answer.sources, 1):
        console.print(f"  [{i}] {source['title']} — {source['source']} (score {source['score']:.3f})")
    for notice in answer.notices:
        console.print(f"  [yellow]note:[/yellow] {notice}")
    for violation in answer.format_violations:
        console.print(f"  [red]format:[/red] {violation}")


def ask(
    ctx: typer.Context,
    question: str = typer.Argument(..., help="The question."),
    channel: str | None = typer.Option(
        None, "--channel", help="Answer as in this Slack channel (its profile applies)."
    ),
    user: str | None = typer.Option(None, "--user", help="Slack user id recorded as the asker."),
    mode: str | None = typer.Option(
        None, "--mode", help="prompt, rag or auto; overrides the channel profile."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
):
    """Answer one question through the full pipeline and store the interaction."""
    if mode is not None and mode not in ("prompt", "rag", "auto"):
        bad_input(f"--mode must be prompt, rag or auto, not {mode!r}")
    result = runtime(ctx).assistant.answer(question, channel=channel, user=user or "cli", mode=mode)
    if as_json:
        print_json(result.to_json())
    else:
        _show(result)
    if result.error:
        raise typer.Exit(1)


def chat(
    ctx: typer.Context,
    channel: str | None = typer.Option(None, "--channel", help="Answer as in this Slack channel."),
    user: str | None = typer.Option(None, "--user", help="Slack user id recorded as the asker."),
    mode: str | None = typer.Option(None, "--mode", help="prompt, rag or auto."),
):
    """An interactive console over the same pipeline (empty line or Ctrl-D to quit)."""
    assistant = runtime(ctx).assistant
    console.print("[bold]Apprenti[/bold] — ask a question; an empty line, Ctrl-D or Ctrl-C quits.")
    while True:
        try:
            question = console.input("[bold cyan]you>[/bold cyan] ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if not question.strip():
            break
        try:
            # Each answer is stored in its own transaction: an interrupt leaves the database consistent.
            _show(assistant.answer(question, channel=channel, user=user or "cli", mode=mode))
        except KeyboardInterrupt:
            console.print("\n[yellow]interrupted[/yellow]")
            break


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("chat")(chat)
