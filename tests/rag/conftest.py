"""Fixtures for the RAG tests: one real MiniLM for the session, small en+fr corpora on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.embeddings import SentenceTransformerEmbedder
from rag.index import DocumentIndex, open_client

SQUAD = Path(__file__).resolve().parents[1] / "data" / "squad"

DOCS = {
    "conges.md": """# Politique de congés

## Congés payés
Chaque salarié a droit à vingt-cinq jours de congés payés par an. Les demandes se font dans
l'outil RH au moins deux semaines à l'avance.

## Télétravail
Les employés peuvent télétravailler deux jours par semaine, avec l'accord de leur responsable.
""",
    "deploy.md": """# Deployment guide

## Staging
Deploy to staging with `make deploy ENV=staging`. The pipeline runs the integration tests first.

## Production
Production releases happen on Tuesdays and Thursdays once the change advisory board approves them.
""",
    "vpn.txt": "VPN access\nThe VPN password rotates every 90 days. Ask the IT desk for a hardware token.\n",
    "expenses.html": (
        "<html><head><title>Expense policy</title><script>var secret = 'do not index';</script></head>"
        "<body><nav>Home | About</nav><h1>Expenses</h1><p>Meals are reimbursed up to 25 euros per day "
        "with a receipt.</p></body></html>"
    ),
    "onboarding/first-week.md": """# First week

## Laptop
New hires collect their laptop from the IT desk on Monday morning.

## Badge
Your office badge is ready at the reception after 10am.
""",
}


def write_docs(root: Path, docs: dict[str, str | bytes] = DOCS) -> Path:
    for name, content in docs.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def make_pdf(pages: list[str]) -> bytes:
    """A small valid PDF with one line of Helvetica text per page (no external tool needed)."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font_id = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        content_id = 4 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The bundled all-MiniLM-L6-v2, loaded once for the whole session."""
    model = SentenceTransformerEmbedder()
    model.encode(["warm up"])
    return model


@pytest.fixture
def docs_dir(tmp_path) -> Path:
    return write_docs(tmp_path / "docs")


@pytest.fixture
def index(tmp_path, embedder) -> DocumentIndex:
    store = tmp_path / "chroma"
    return DocumentIndex(open_client(path=store), store, embedder)
