"""`apprenti demo`: the offline end-to-end demonstration in a fresh home."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer
from rich.rule import Rule

from bot.cli.common import console

QUESTIONS = [
    "How do I request holidays?",
    "Combien de jours pour déposer une note de frais ?",
]


def demo(
    home: Path | None = typer.Option(None, "--home", help="Folder for the demo's data (default: a new temporary folder)."),
):
    """Run Apprenti offline on a tiny model in a fresh home and show each step."""
    from bot.runtime import Runtime
    from bot.settings import load_settings
    from finetune.tiny import make_tiny

    home = home or Path(tempfile.mkdtemp(prefix="apprenti-demo-"))
    console.print(Rule("Apprenti demo"))
    console.print(f"Data folder: {home}")
    model_dir = home / "models" / "tiny"
    if not (model_dir / "config.json").is_file():
        with console.status("Making the offline test model..."):
            make_tiny(model_dir)
    console.print(f"Model: a random tiny Llama at {model_dir} (its answers are noise; the pipeline is real)")
    runtime = Runtime(load_settings(home=home, base_model=str(model_dir), max_new_tokens=48))
    for question in QUESTIONS:
        console.print(Rule(f"[bold]@employee[/bold]: {question}"))
        answer = runtime.assistant.answer(question, user="U-demo", channel="C-demo")
        console.print(f"[bold]Apprenti[/bold] (mode {answer.mode}, adapter {answer.adapter or 'base model'}, "
                      f"{answer.latency_ms} ms, interaction #{answer.interaction_id}):")
        console.print(answer.answer, highlight=False, markup=False)
        for notice in answer.notices:
            console.print(f"  [yellow]note:[/yellow] {notice}")
    console.print(Rule("done"))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
