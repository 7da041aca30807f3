"""`apprenti examples list|import|export|approve|reject`: training pairs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from bot.cli.common import EXIT_BAD_INPUT, bad_input, console, err_console, fail, print_json, runtime

examples_app = typer.Typer(help="Training pairs: list, import, export, review.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print one JSON document.")


def _row(e) -> dict:
    return {"id": e.id, "track": e.track, "status": e.status, "origin": e.origin, "split": e.split,
            "question": e.question, "context": e.context, "original_answer": e.original_answer,
            "corrected_answer": e.corrected_answer, "author": e.author_id, "reviewer": e.reviewer_id,
            "flag": e.flag, "created_at": e.created_at}


@examples_app.command("list")
def list_cmd(ctx: typer.Context, status: str | None = typer.Option(None, "--status", help="pending, approved or rejected."),
             track: str | None = typer.Option(None, "--track"), limit: int | None = typer.Option(None, "--limit", min=1),
             as_json: bool = JSON):
    """List training pairs."""
    from storage.examples import list_examples
    from storage.models import ExampleStatus

    if status and status not in {s.value for s in ExampleStatus}:
        bad_input(f"--status {status!r}: choose pending, approved or rejected")
    rows = list_examples(runtime(ctx).engine, status=status, track=track, limit=limit)
    if as_json:
        print_json({"count": len(rows), "examples": [_row(e) for e in rows]})
        return
    table = Table("id", "track", "status", "split", "question", "answer", "flag")
    for e in rows:
        table.add_row(str(e.id), e.track, e.status, e.split, e.question[:60], e.corrected_answer[:60], e.flag or "")
    console.print(table)


@examples_app.command("import")
def import_cmd(ctx: typer.Context, file: Path = typer.Argument(..., help="JSON or JSONL file."),
               fmt: str = typer.Option(..., "--format", help="alpaca, sharegpt or openai."),
               approved: bool = typer.Option(False, "--approved", help="Admins: import as approved (skip review)."),
               track: str = typer.Option("default", "--track"),
               actor: str = typer.Option("cli", "--actor", help="Who imports, for the audit log."),
               as_json: bool = JSON):
    """Validate the whole file, then import every pair (pending review unless --approved), or nothing."""
    from finetune.formats import FORMATS, FormatError, import_pairs, parse_file

    if fmt not in FORMATS:
        bad_input(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    try:
        result = parse_file(file, fmt)
    except FormatError as exc:
        bad_input(str(exc))
    report = {"file": str(file), "format": fmt, "records": result.records,
              "problems": [p.as_dict() for p in result.problems], "skipped": [p.as_dict() for p in result.skipped]}
    if not result.ok:
        report.update(imported=0, ok=False)
        if as_json:
            print_json(report)
        for problem in result.problems:
            err_console.print(f"{file}:{problem}", highlight=False, markup=False)
        err_console.print(f"[red]error:[/red] {len(result.errors)} bad record(s) in {file}: nothing was imported.")
        raise typer.Exit(EXIT_BAD_INPUT)
    rt = runtime(ctx)
    from plugins.pii import scrub

    stored, duplicates = import_pairs(rt.engine, result.pairs, track=track, approved=approved, actor=actor,
                                      scrub=lambda text: scrub(rt.plugins, text), source=file.name)
    report.update(ok=True, imported=len(stored), duplicates=duplicates, track=track,
                  status="approved" if approved else "pending", ids=[e.id for e in stored])
    if as_json:
        print_json(report)
    else:
        console.print(f"Imported {len(stored)} pair(s) into track {track} as {report['status']}"
                      f" ({duplicates} duplicate(s) skipped, {len(result.skipped)} record(s) not training pairs).")
        for problem in result.problems:
            console.print(f"{file}:{problem}", highlight=False, markup=False)


@examples_app.command("export")
def export_cmd(ctx: typer.Context, file: Path = typer.Argument(..., help="Output file (.json: array, else JSONL)."),
               fmt: str = typer.Option(..., "--format", help="alpaca, sharegpt or openai."),
               track: str = typer.Option("default", "--track"),
               preference: bool = typer.Option(False, "--preference", help="ShareGPT: chosen/rejected pairs."),
               as_json: bool = JSON):
    """Write the pairs training would use (approved, deduplicated, no contradictions)."""
    from finetune.formats import FORMATS, training_pairs, write_file

    if fmt not in FORMATS:
        bad_input(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    pairs = training_pairs(runtime(ctx).engine, track)
    try:
        count = write_file(pairs, fmt, file, preference=preference)
    except OSError as exc:
        fail(f"cannot write {file}: {exc.strerror or exc}")
    if as_json:
        print_json({"file": str(file), "format": fmt, "track": track, "exported": count})
    else:
        console.print(f"Wrote {count} pair(s) of track {track} to {file}.")


def _review(ctx, example_id: int, status: str, reviewer: str, as_json: bool):
    from storage.examples import get_example, review_example

    engine = runtime(ctx).engine
    if get_example(engine, example_id) is None:
        bad_input(f"no example #{example_id}")
    row = review_example(engine, example_id, status, reviewer)
    if row is None:
        fail(f"example #{example_id} is not pending (already {get_example(engine, example_id).status})")
    if as_json:
        print_json(_row(row))
    else:
        console.print(f"Example #{example_id} {status} by {reviewer}.")


@examples_app.command("approve")
def approve_cmd(ctx: typer.Context, example_id: int = typer.Argument(...),
                reviewer: str = typer.Option("cli", "--reviewer"), as_json: bool = JSON):
    """Approve a pending pair."""
    _review(ctx, example_id, "approved", reviewer, as_json)


@examples_app.command("reject")
def reject_cmd(ctx: typer.Context, example_id: int = typer.Argument(...),
               reviewer: str = typer.Option("cli", "--reviewer"), as_json: bool = JSON):
    """Reject a pending pair."""
    _review(ctx, example_id, "rejected", reviewer, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(examples_app, name="examples")
