from pathlib import Path

import pytest

from rag.chunking import split_documents
from rag.loaders import LoadError, MissingPathError, discover, load_file
from tests.rag.conftest import make_pdf


def test_discover_expands_folders_lists_unsupported_and_ignores_hidden(tmp_path):
    (tmp_path / "a.md").write_text("# A\ntext")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.HTML").write_text("<p>b</p>")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "notes.md").write_text("hidden")
    files, skipped = discover([tmp_path, tmp_path / "a.md"])
    assert sorted(f.name for f in files) == ["a.md", "b.HTML"]
    assert [(Path(s.path).name, s.reason) for s in skipped] == [("photo.png", "unsupported file type '.png'")]


def test_discover_names_a_missing_path(tmp_path):
    with pytest.raises(MissingPathError, match="nowhere.md: no such file"):
        discover([tmp_path / "nowhere.md"])
    with pytest.raises(MissingPathError, match="no path given"):
        discover([])


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("blank.txt", b"  \n\n\t ", "no text"),
        ("blob.txt", b"\x00\x01\x02\x03binary", "binary file"),
        ("latin1.txt", "café crème".encode("latin-1"), "not valid UTF-8 (byte 0xe9 at offset 3)"),
        ("broken.pdf", b"this is not a pdf", "corrupt PDF: no PDF header"),
        ("truncated.pdf", make_pdf(["hello"])[:60], "corrupt PDF"),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LoadError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_file(path)


def test_utf8_bom_and_utf16_text_load(tmp_path):
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffÉté indien".encode())
    assert load_file(bom)[0].page_content == "Été indien"
    wide = tmp_path / "wide.txt"
    wide.write_bytes("Réunion mensuelle".encode("utf-16"))
    assert load_file(wide)[0].page_content == "Réunion mensuelle"


def test_html_keeps_visible_text_and_title_only(tmp_path):
    page = tmp_path / "p.html"
    page.write_text(
        "<html><head><title>Expense policy</title><style>p{}</style><script>var s='hidden';</script></head>"
        "<body><nav>menu</nav><h1>Expenses</h1><p>Meals up to 25 euros.</p></body></html>"
    )
    [doc] = load_file(page)
    assert doc.metadata["title"] == "Expense policy"
    assert "Meals up to 25 euros." in doc.page_content
    assert "hidden" not in doc.page_content and "menu" not in doc.page_content


def test_pdf_pages_are_numbered_from_one(tmp_path):
    pdf = tmp_path / "handbook.pdf"
    pdf.write_bytes(make_pdf(["Security badges are blue.", "Parking is free on Fridays."]))
    docs = load_file(pdf)
    assert [d.metadata["page"] for d in docs] == [1, 2]
    chunks = split_documents(docs)
    assert [(c.page, c.title) for c in chunks] == [(1, "handbook"), (2, "handbook")]
    assert "Parking is free" in chunks[1].text
