"""The team's documents in one process: the index the settings point at, ingestion, and what a
re-ingest means for the documents listed as suspect. The command line, the Slack face
(`/apprenti ingest`, the readiness advice) and the demo all go through here."""

from __future__ import annotations

from pathlib import Path


def open_index(settings):
    """The document index the settings point at: a Chroma server (APPRENTI_CHROMA_URL) or the embedded one."""
    from rag.index import DocumentIndex

    url = settings.chroma_url
    return DocumentIndex.open(
        path=None if url else settings.chroma_path,
        url=url,
        state_dir=settings.home / "rag" if url else settings.chroma_path,
        model=settings.embedding_model,
        backend=settings.embedding_backend,
    )


def clear_suspects(settings, engine, report) -> int:
    """Documents that a re-ingest changed (or pruned) are no longer suspect: their owners fixed them.
    Suspects are recorded as answers cited them (relative to their document root), so both forms match."""
    from plugins.builtin.rag import shown_source
    from storage.knowledge import clear_documents

    changed = [*report.updated, *report.removed]
    if engine is None or not changed:
        return 0
    roots = [Path(r).expanduser().resolve() for r in settings.document_roots or []]
    names = {form for path in changed for form in (str(path), shown_source(str(path), roots))}
    return clear_documents(engine, report.collection, sorted(names), actor="ingest")


def ingest_paths(
    settings,
    paths: list[str],
    collection: str = "default",
    prune: bool = False,
    progress=None,
    engine=None,
    index=None,
) -> dict:
    """Index files and folders into `index` (the process's, when given; else the settings' index);
    the report as a dict (used by /apprenti ingest). With `engine`, changed documents stop being
    listed as suspect."""
    settings.ensure_home()
    index = index if index is not None else open_index(settings)
    report = index.ingest(paths, collection=collection, prune=prune, progress=progress)
    data = report.to_dict()
    data["documents"] = len(report.added) + len(report.updated)
    data["suspects_cleared"] = clear_suspects(settings, engine, report)
    return data
