"""`apprenti eval answers FILE`: a golden-set evaluation of the whole answer pipeline."""

from __future__ import annotations

import typer

from bot.cli.common import bad_input, console, fail, print_json, runtime
from bot.cli.rag import eval_app


@eval_app.command("answers")
def eval_answers(
    ctx: typer.Context,
    path: str = typer.Argument(
        ..., help='JSONL: one {"question", "answers": [...]} or {"question", "reference"} a line.'
    ),
    mode: str | None = typer.Option(
        None, "--mode", help="prompt | rag | auto (default: the channel profile's)."
    ),
    adapter: str = typer.Option(
        "active", "--adapter", help="base, active, or an adapter version such as default/v3."
    ),
    channel: str | None = typer.Option(
        None, "--channel", help="Answer as in this channel (its profile applies)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
):
    """Answer every question of FILE through the full pipeline (retrieval, few-shot, prompts, the
    chosen adapter), in batches, and score it: accuracy on accepted answers, token F1 (and ROUGE-L
    against references). Nothing is stored."""
    from bot.llm import ACTIVE, BASE
    from finetune.answers import AnswerSetError, load_items, score, summarise

    if mode is not None and mode not in ("prompt", "rag", "auto"):
        bad_input(f"--mode must be prompt, rag or auto, not {mode!r}")
    try:
        items = load_items(path)
    except AnswerSetError as exc:
        bad_input(str(exc))
    rt = runtime(ctx)
    rt.apply_torch_threads()
    which = {"active": ACTIVE, "base": BASE}.get(adapter, adapter)
    if which not in (ACTIVE, BASE):
        from storage.adapters import get_adapter

        if get_adapter(rt.engine, which) is None:
            bad_input(f"--adapter: no adapter {which!r} in the registry (see `apprenti adapters list`)")
    answers = rt.assistant.answer_many([i.question for i in items], channel=channel, mode=mode, adapter=which)
    errors = [a.error for a in answers if a.error]
    if errors and len(errors) == len(answers):
        fail(f"the model could not answer: {errors[0]}")
    rows = []
    for item, answer in zip(items, answers, strict=True):
        rows.append(
            {
                "question": item.question,
                "answer": answer.answer,
                **score(answer.answer, item),
                "mode": answer.mode,
                "adapter": answer.adapter,
                "sources": [
                    {k: s.get(k) for k in ("title", "source", "score", "kind")} for s in answer.sources
                ],
            }
        )
    result = {**summarise(rows), "adapter": adapter, "mode": mode or "profile", "items": rows}
    if as_json:
        print_json(result)
        return
    for row in rows:
        mark = {True: "[green]✓[/green]", False: "[red]✗[/red]", None: " "}[row["hit"]]
        console.print(f"{mark} {row['question']}\n    {row['answer'][:200]}", highlight=False)
    accuracy = "–" if result["accuracy"] is None else f"{result['accuracy']:.2f}"
    console.print(f"{result['count']} questions: accuracy {accuracy}, token F1 {result['token_f1']:.2f}")


def register(app: typer.Typer) -> None:
    """The command is added to `apprenti eval` (defined with `eval retrieval` in bot/cli/rag.py)."""
