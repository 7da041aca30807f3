from langchain_core.documents import Document

from rag.chunking import CHUNK_SIZE, Chunk, content_hash, split_documents


def _md(text: str, source: str = "/docs/guide.md") -> list[Document]:
    return [Document(page_content=text, metadata={"source": source, "kind": "markdown"})]


def test_markdown_chunks_carry_title_heading_path_and_position():
    chunks = split_documents(
        _md("# Leave\n\nIntro.\n\n## Sick leave\n\nCall your manager.\n\n### Long illness\n\nSee HR.\n")
    )
    assert [(c.title, c.heading, c.position) for c in chunks] == [
        ("Leave", "", 0),
        ("Leave", "Sick leave", 1),
        ("Leave", "Sick leave > Long illness", 2),
    ]
    assert chunks[2].text == "See HR."
    assert chunks[2].index_text == "Leave — Sick leave > Long illness\nSee HR."
    assert chunks[2].content_hash == content_hash("See HR.")


def test_long_sections_are_split_under_the_chunk_size_with_overlap():
    sentences = " ".join(f"Sentence number {i} explains one more detail of the process." for i in range(120))
    chunks = split_documents(_md(f"# Process\n\n## Steps\n\n{sentences}"))
    assert len(chunks) > 5
    assert all(len(c.text) <= CHUNK_SIZE for c in chunks)
    assert all(c.heading == "Steps" for c in chunks)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    # consecutive chunks overlap, so a sentence cut at a boundary is still whole in one of them
    assert chunks[0].text[-40:].split()[-1] in chunks[1].text


def test_text_title_is_the_short_first_line_or_the_file_name():
    doc = Document(
        page_content="VPN access\nRotate the password.", metadata={"source": "/d/vpn.txt", "kind": "text"}
    )
    [chunk] = split_documents([doc])
    assert (chunk.title, chunk.text) == ("VPN access", "Rotate the password.")  # the title is not repeated
    one_line = Document(
        page_content="Rotate the password.", metadata={"source": "/d/vpn-note.txt", "kind": "text"}
    )
    assert split_documents([one_line])[0].title == "vpn note"
    long_line = Document(page_content="x " * 200, metadata={"source": "/d/team_notes.txt", "kind": "text"})
    assert split_documents([long_line])[0].title == "team notes"


def test_chunk_without_context_indexes_its_text_only():
    assert Chunk("body", "/s", "", 0).index_text == "body"
