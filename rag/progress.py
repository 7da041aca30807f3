"""A rich progress bar driven by DocumentIndex.ingest's progress callback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rag.index import Progress as IngestProgress
from rag.index import ProgressCallback


@contextmanager
def ingest_progress_bar(console: Console | None = None, disable: bool = False) -> Iterator[ProgressCallback]:
    """Yield a callback for ``ingest(progress=...)`` that draws files done / total and the current file."""
    bar = Progress(
        TextColumn("[bold]Indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}", style="dim"),
        console=console,
        transient=True,
        disable=disable,
    )
    task = bar.add_task("", total=None)

    def update(event: IngestProgress) -> None:
        name = event.path.rsplit("/", 1)[-1]
        bar.update(task, completed=event.done, total=event.total, description=f"{event.stage} {name}")

    with bar:
        yield update
