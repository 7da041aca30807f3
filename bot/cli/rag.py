"""`apprenti ingest` (index documents) and `apprenti eval retrieval` (recall@k and MRR on BEIR-like files)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from bot.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, bad_input, console, err_console, fail, print_json
from bot.documents import clear_suspects, ingest_paths, open_index

eval_app = typer.Typer(help="Evaluate parts of the assistant.", no_args_is_help=True)


def _listing(index, collection: str | None) -> list[dict]:
    return [r.to_dict() for r in index.sources(collection)]


def ingest(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(None, help="Files or folders (Markdown, text, HTML, PDF)."),
    collection: str = typer.Option("default", "--collection", "-c", help="Collection to index into."),
    prune: bool = typer.Option(False, "--prune", help="Remove chunks of files that are gone."),
    list_sources: bool = typer.Option(
        False, "--list", help="List indexed files with chunk counts and times."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
):
    """Index documents for retrieval; unchanged files are skipped, changed files replaced."""
    from bot.cli.common import runtime
    from rag.index import IndexMismatch, IndexUnavailable, validate_collection
    from rag.loaders import MissingPathError
    from rag.progress import ingest_progress_bar

    rt = runtime(ctx)
    settings = rt.settings
    if not paths and not list_sources:
        bad_input("name at least one file or folder to ingest (or use --list)")
    try:
        validate_collection(collection)
    except ValueError as exc:
        bad_input(str(exc))
    for path in paths or []:
        if not Path(path).exists():
            bad_input(f"{path}: no such file or folder")
    try:
        settings.ensure_home()
        index = rt.documents
        result: dict = {}
        if paths:
            with ingest_progress_bar(console=err_console, disable=as_json) as progress:
                report = index.ingest(paths, collection=collection, prune=prune, progress=progress)
            result = report.to_dict()
            result["suspects_cleared"] = clear_suspects(settings, rt.engine, report)
        if list_sources:
            result["sources"] = _listing(index, None if paths is None else collection)
    except MissingPathError as exc:
        bad_input(str(exc))
    except (IndexUnavailable, IndexMismatch) as exc:
        fail(str(exc))
    if as_json:
        print_json(result)
    else:
        _print_ingest(result)
    if paths and not (result["added"] or result["updated"] or result["unchanged"]) and result["skipped"]:
        raise typer.Exit(EXIT_FAILED)  # nothing at all could be indexed


def _print_ingest(result: dict) -> None:
    if "added" in result:
        console.print(
            f"[bold]{result['collection']}[/bold]: {len(result['added'])} added, {len(result['updated'])} "
            f"updated, {len(result['unchanged'])} unchanged, {len(result['removed'])} removed, "
            f"{result['chunks']} chunks in {result['seconds']:.1f} s"
        )
        for skipped in result["skipped"]:
            err_console.print(
                f"[yellow]skipped[/yellow] {skipped['path']}: {skipped['reason']}", highlight=False
            )
        if not (result["added"] or result["updated"] or result["unchanged"] or result["skipped"]):
            err_console.print("[yellow]warning:[/yellow] no documents found in the given paths")
    if "sources" in result:
        table = Table("collection", "source", "chunks", "indexed at")
        for row in result["sources"]:
            table.add_row(row["collection"], row["source"], str(row["chunks"]), row["indexed_at"])
        console.print(table if result["sources"] else "The index is empty.")


@eval_app.command("retrieval")
def eval_retrieval(
    ctx: typer.Context,
    corpus: Path = typer.Option(..., "--corpus", help="JSONL of {_id, title, text}."),
    queries: Path = typer.Option(..., "--queries", help="JSONL of {_id, text, gold_doc_id}."),
    sample: int | None = typer.Option(
        None, "--sample", help="Evaluate N queries drawn with numpy default_rng(seed)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, dense or bm25."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
):
    """recall@1/5/10 and MRR of the retriever on a BEIR-like corpus (indexed in memory for the run)."""
    from bot.cli.common import runtime
    from rag.evaluation import evaluate_files
    from rag.metrics import BadEvalInput
    from rag.retriever import MODES

    if mode not in MODES:
        bad_input(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    settings = runtime(ctx).settings
    started = time.perf_counter()
    try:
        result = evaluate_files(
            corpus,
            queries,
            sample=sample,
            seed=seed,
            model=settings.embedding_model,
            backend=settings.embedding_backend,
            mode=mode,
        )
    except BadEvalInput as exc:
        bad_input(str(exc))
    result["seconds"] = round(time.perf_counter() - started, 1)
    if as_json:
        print_json(result)
        return
    table = Table("metric", "value")
    for key in ("recall@1", "recall@5", "recall@10", "mrr", "queries", "latency_ms_p50", "latency_ms_p99"):
        value = result[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.add_typer(eval_app, name="eval")


__all__ = ["register", "ingest_paths", "open_index", "EXIT_BAD_INPUT"]
