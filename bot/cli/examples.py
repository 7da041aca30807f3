"""`apprenti examples list|import|export|approve|reject|kind`: corrections and training pairs.

Each example has a kind: a `fact` is answered from the team's knowledge base as soon as it is
approved, a `behaviour` pair (tone, format, template) goes to training, `both` goes both ways."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from bot.cli.common import EXIT_BAD_INPUT, bad_input, console, err_console, fail, print_json, runtime

examples_app = typer.Typer(
    help="Corrections and training pairs: list, import, export, review.", no_args_is_help=True
)
JSON = typer.Option(False, "--json", help="Print one JSON document.")
KINDS = ("fact", "behaviour", "both")


def _kind(value: str | None, option: str = "--kind") -> str | None:
    if value is not None and value not in KINDS:
        bad_input(f"{option} {value!r}: choose fact, behaviour or both")
    return value


def _row(e) -> dict:
    return {
        "id": e.id,
        "track": e.track,
        "status": e.status,
        "origin": e.origin,
        "split": e.split,
        "question": e.question,
        "context": e.context,
        "original_answer": e.original_answer,
        "corrected_answer": e.corrected_answer,
        "author": e.author_id,
        "reviewer": e.reviewer_id,
        "kind": e.kind,
        "kind_source": e.kind_source,
        "superseded_by": e.superseded_by,
        "indexed_at": e.indexed_at,
        "index_error": e.index_error,
        "flag": e.flag,
        "created_at": e.created_at,
    }


@examples_app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: str | None = typer.Option(None, "--status", help="pending, approved or rejected."),
    track: str | None = typer.Option(None, "--track"),
    limit: int | None = typer.Option(None, "--limit", min=1),
    kind: str | None = typer.Option(None, "--kind", help="fact, behaviour or both."),
    as_json: bool = JSON,
):
    """List corrections and training pairs with their kind."""
    from storage.examples import list_examples
    from storage.models import ExampleStatus

    if status and status not in {s.value for s in ExampleStatus}:
        bad_input(f"--status {status!r}: choose pending, approved or rejected")
    _kind(kind)
    rows = list_examples(runtime(ctx).engine, status=status, track=track, limit=None if kind else limit)
    if kind:
        rows = [e for e in rows if e.kind == kind][:limit]
    if as_json:
        print_json({"count": len(rows), "examples": [_row(e) for e in rows]})
        return
    table = Table("id", "track", "status", "kind", "split", "question", "answer", "flag")
    for e in rows:
        shown_kind = e.kind + (f" → #{e.superseded_by}" if e.superseded_by else "")
        table.add_row(
            str(e.id),
            e.track,
            e.status,
            shown_kind,
            e.split,
            e.question[:60],
            e.corrected_answer[:60],
            e.flag or e.index_error or "",
        )
    console.print(table)


@examples_app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="JSON or JSONL file."),
    fmt: str = typer.Option(..., "--format", help="alpaca, sharegpt or openai."),
    approved: bool = typer.Option(False, "--approved", help="Admins: import as approved (skip review)."),
    track: str = typer.Option("default", "--track"),
    kind: str = typer.Option(
        "behaviour", "--kind", help="fact (answered from the knowledge base), behaviour (trained) or both."
    ),
    actor: str = typer.Option("cli", "--actor", help="Who imports, for the audit log."),
    as_json: bool = JSON,
):
    """Validate the whole file, then import every pair (pending review unless --approved), or nothing."""
    from finetune.formats import FORMATS, FormatError, import_pairs, parse_file

    if fmt not in FORMATS:
        bad_input(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    _kind(kind)
    try:
        result = parse_file(file, fmt)
    except FormatError as exc:
        bad_input(str(exc))
    report = {
        "file": str(file),
        "format": fmt,
        "records": result.records,
        "problems": [p.as_dict() for p in result.problems],
        "skipped": [p.as_dict() for p in result.skipped],
    }
    if not result.ok:
        report.update(imported=0, ok=False)
        if as_json:
            print_json(report)
        for problem in result.problems:
            err_console.print(f"{file}:{problem}", highlight=False, markup=False)
        err_console.print(
            f"[red]error:[/red] {len(result.errors)} bad record(s) in {file}: nothing was imported."
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    rt = runtime(ctx)
    from plugins.pii import scrub

    stored, duplicates = import_pairs(
        rt.engine,
        result.pairs,
        track=track,
        approved=approved,
        actor=actor,
        scrub=lambda text: scrub(rt.plugins, text),
        source=file.name,
        kind=kind,
    )
    indexed = None
    if approved and kind != "behaviour" and stored:  # approved facts answer at once
        from bot.corrections import route

        indexed = sum(bool(route(rt.plugins, rt.engine, e, "approved", actor).indexed) for e in stored)
    report.update(
        ok=True,
        imported=len(stored),
        duplicates=duplicates,
        track=track,
        kind=kind,
        status="approved" if approved else "pending",
        ids=[e.id for e in stored],
        knowledge_indexed=indexed,
    )
    if as_json:
        print_json(report)
    else:
        console.print(
            f"Imported {len(stored)} pair(s) into track {track} as {report['status']}"
            f" ({duplicates} duplicate(s) skipped, {len(result.skipped)} record(s) not training pairs)."
        )
        for problem in result.problems:
            console.print(f"{file}:{problem}", highlight=False, markup=False)


@examples_app.command("export")
def export_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Output file (.json: array, else JSONL)."),
    fmt: str = typer.Option(..., "--format", help="alpaca, sharegpt or openai."),
    track: str = typer.Option("default", "--track"),
    preference: bool = typer.Option(False, "--preference", help="ShareGPT: chosen/rejected pairs."),
    as_json: bool = JSON,
):
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


def _routed(decision) -> dict:
    example = decision.example
    return {
        **_row(example),
        "replaced": [e.id for e in decision.replaced],
        "documents_flagged": decision.flagged,
        "knowledge_indexed": decision.indexed,
    }


def _say(decision, headline: str) -> None:
    example = decision.example
    console.print(headline)
    if decision.indexed is True:
        console.print("In the knowledge base: it answers the next question on this at once.")
    elif decision.indexed is False:
        err_console.print(
            f"[yellow]warning:[/yellow] approved, but not in the knowledge base yet "
            f"({example.index_error or 'see the log'}); it is retried before the next answer."
        )
    for old in decision.replaced:
        console.print(f"It replaces the earlier team answer #{old.id}: {old.corrected_answer[:100]!r}.")
    if decision.flagged:
        console.print(f"{decision.flagged} document(s) the wrong answer cited are listed for their owners.")


def _finish(decision, example_id: int, as_json: bool, refused: str, headline: str) -> None:
    """Print a review decision, or exit 2 when the example is gone and 1 when it could not change."""
    if decision.outcome == "gone":
        bad_input(f"no example #{example_id}")
    if not decision.done:
        fail(refused.format(id=example_id, status=decision.example.status))
    if as_json:
        print_json(_routed(decision))
    else:
        _say(decision, headline.format(id=example_id, kind=decision.example.kind))


def _review(ctx, example_id: int, status: str, reviewer: str, as_json: bool, kind: str | None = None):
    from bot.corrections import decide

    rt = runtime(ctx)
    decision = decide(rt.engine, rt.plugins, example_id, status, reviewer, kind=_kind(kind))
    _finish(
        decision,
        example_id,
        as_json,
        "example #{id} is not pending (already {status})",
        f"Example #{{id}} ({{kind}}) {status} by {reviewer}.",
    )


@examples_app.command("approve")
def approve_cmd(
    ctx: typer.Context,
    example_id: int = typer.Argument(...),
    reviewer: str = typer.Option("cli", "--reviewer"),
    kind: str | None = typer.Option(None, "--kind", help="Set the kind on the way: fact, behaviour or both."),
    as_json: bool = JSON,
):
    """Approve a pending pair: a fact goes to the knowledge base at once, a behaviour pair to training."""
    _review(ctx, example_id, "approved", reviewer, as_json, kind)


@examples_app.command("reject")
def reject_cmd(
    ctx: typer.Context,
    example_id: int = typer.Argument(...),
    reviewer: str = typer.Option("cli", "--reviewer"),
    as_json: bool = JSON,
):
    """Reject a pending pair."""
    _review(ctx, example_id, "rejected", reviewer, as_json)


@examples_app.command("kind")
def kind_cmd(
    ctx: typer.Context,
    example_id: int = typer.Argument(...),
    kind: str = typer.Argument(..., help="fact, behaviour or both."),
    actor: str = typer.Option("cli", "--actor"),
    as_json: bool = JSON,
):
    """Change what a pending or approved pair fixed; an approved one moves at once."""
    from bot.corrections import change_kind

    rt = runtime(ctx)
    decision = change_kind(rt.engine, rt.plugins, example_id, _kind(kind, "KIND"), actor)
    _finish(
        decision,
        example_id,
        as_json,
        "example #{id} is {status}: only a pending or approved pair has a kind to change",
        "Example #{id} is now {kind}.",
    )


def register(app: typer.Typer) -> None:
    app.add_typer(examples_app, name="examples")
