"""Find documents on disk and load them with LangChain loaders; bad files are refused with a reason."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from langchain_community.document_loaders import PyPDFLoader, TextLoader
from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

KINDS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}


class LoadError(Exception):
    """A file cannot be indexed; the message is the reason shown to the user."""


class MissingPathError(FileNotFoundError):
    """A path given to ingest does not exist."""


@dataclass(frozen=True)
class Skipped:
    """A file left out of the index and why."""

    path: str
    reason: str


def discover(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Skipped]]:
    """Expand files and folders into supported files; other files are returned as skipped.

    Hidden files and folders (``.git``, ``.DS_Store``) inside a folder are ignored silently.
    A path that does not exist raises MissingPathError naming it.
    """
    found: dict[Path, None] = {}
    skipped: list[Skipped] = []
    given = [Path(p) for p in paths]
    if not given:
        raise MissingPathError("no path given: name at least one file or folder to ingest")
    for path in given:
        if not path.exists():
            raise MissingPathError(f"{path}: no such file or folder")
        if path.is_dir():
            candidates = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            candidates = [path]
        for file in candidates:
            resolved = file.resolve()
            if file.suffix.lower() in KINDS:
                found[resolved] = None
            else:
                skipped.append(Skipped(str(resolved), f"unsupported file type {file.suffix or '(none)'!r}"))
    return list(found), skipped


def kind_of(path: Path) -> str:
    try:
        return KINDS[path.suffix.lower()]
    except KeyError:
        raise LoadError(f"unsupported file type {path.suffix or '(none)'!r}") from None


def _check_text_bytes(data: bytes) -> str:
    """Decode UTF-8 text (a BOM is allowed), refusing binary data and other encodings."""
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LoadError("binary file (contains NUL bytes), not text")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise LoadError(f"invalid UTF-16 text: {exc.reason} at byte {exc.start}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); re-save the file as UTF-8"
        ) from None


class HTMLLoader(BaseLoader):
    """Visible text of an HTML page; the title comes from <title> or the first <h1>."""

    _DROP = ("script", "style", "noscript", "template", "nav", "footer", "svg", "head")

    def __init__(self, file_path: str | Path, text: str) -> None:
        self.file_path = str(file_path)
        self.text = text

    def lazy_load(self) -> Iterator[Document]:
        from bs4 import BeautifulSoup

        soup = BeautifulSoup(self.text, "lxml")
        title = soup.title.get_text(" ", strip=True) if soup.title else ""
        if not title and soup.h1:
            title = soup.h1.get_text(" ", strip=True)
        for tag in soup(list(self._DROP)):
            tag.decompose()
        body = soup.get_text("\n")
        body = re.sub(r"[ \t\r\f\v]+", " ", body)
        body = re.sub(r"\s*\n\s*", "\n", body).strip()
        yield Document(page_content=body, metadata={"source": self.file_path, "title": title})


def load_file(path: Path) -> list[Document]:
    """Load one file into LangChain documents (one per PDF page, one otherwise).

    Raises LoadError with the reason when the file is empty, binary, badly encoded,
    a corrupt or encrypted PDF, or has no text at all.
    """
    kind = kind_of(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise LoadError("empty file")
    if kind == "pdf":
        docs = _load_pdf(path)
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LoadError(f"cannot read: {exc.strerror or exc}") from None
        text = _check_text_bytes(data)
        if kind == "html":
            docs = HTMLLoader(path, text).load()
        else:
            # The bytes were checked above; TextLoader reads them as UTF-8 (with or without BOM).
            encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
            docs = TextLoader(str(path), encoding=encoding).load()
    if not any(d.page_content.strip() for d in docs):
        raise LoadError("no text in the file" + (" (a scanned PDF needs OCR first)" if kind == "pdf" else ""))
    for doc in docs:
        doc.metadata["source"] = str(path)
        doc.metadata["kind"] = kind
    return docs


def _load_pdf(path: Path) -> list[Document]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        with path.open("rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from None
    if b"%PDF-" not in head:
        raise LoadError("corrupt PDF: no PDF header")
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise LoadError("encrypted PDF: remove the password before indexing")
        title = ""
        if reader.metadata and reader.metadata.title:
            title = str(reader.metadata.title).strip()
        docs = PyPDFLoader(str(path), mode="page").load()
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise LoadError(f"corrupt PDF: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged files
        raise LoadError(f"corrupt PDF: {type(exc).__name__}: {exc}") from None
    for doc in docs:
        doc.metadata["title"] = title
        # PyPDFLoader counts pages from 0; people count from 1.
        doc.metadata["page"] = int(doc.metadata.get("page", 0)) + 1
    return docs
