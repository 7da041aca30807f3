"""The ONNX Runtime embedding backends against plain sentence-transformers, on the real bundled MiniLM."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import rag.embeddings as embeddings
import rag.onnx_encoder as onnx_encoder
from rag.embeddings import SentenceTransformerEmbedder, default_model, load_model
from rag.onnx_encoder import OnnxEncoder, OnnxUnsupported

TEXTS = [
    "How many vacation days do new employees get?",
    "Chaque salarié a droit à vingt-cinq jours de congés payés par an.",
    "VPN",
    "Production releases happen on Tuesdays and Thursdays once the change advisory board approves them. " * 6,
    "Meals are reimbursed up to 25 euros per day with a receipt.",
]


@pytest.fixture(scope="module")
def st():
    return load_model(default_model(), "cpu", 128)


@pytest.fixture(scope="module")
def reference(st) -> np.ndarray:
    return st.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.mark.parametrize(("backend", "least"), [("onnx", 0.9999), ("onnx-int8", 0.98)])
def test_vectors_match_pytorch(st, reference, cache, backend, least):
    encoder = OnnxEncoder(st, default_model(), backend, cache_dir=cache)
    # batch_size 2 over texts of very different lengths: sorting and padding must not move rows.
    got = encoder.encode(TEXTS, batch_size=2)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosines = (got * reference).sum(axis=1)
    assert cosines.min() >= least, cosines
    # One question alone, on the single-thread session: the same vector as in a batch in float32; with
    # int8 the activations are quantised over the whole batch, so batch-mates move it a little.
    alone = encoder.encode(TEXTS[:1], small=True)[0]
    if backend == "onnx":
        np.testing.assert_allclose(alone, got[0], atol=1e-5)
    else:
        assert float(alone @ got[0]) >= least


def test_export_is_cached_and_reused(st, cache, monkeypatch):
    first = OnnxEncoder(st, default_model(), "onnx-int8", cache_dir=cache)
    stamp = first.path.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cached file is valid")

    monkeypatch.setattr(onnx_encoder, "_export", no_export)
    second = OnnxEncoder(st, default_model(), "onnx-int8", cache_dir=cache)
    assert second.path == first.path and second.path.stat().st_mtime_ns == stamp
    assert not [p for p in cache.iterdir() if p.name.startswith(".export-")], (
        "no temporary folder left behind"
    )


def test_a_damaged_cache_file_is_exported_again(st, tmp_path):
    encoder = OnnxEncoder(st, default_model(), "onnx", cache_dir=tmp_path)
    encoder.path.write_bytes(b"not an onnx graph")
    again = OnnxEncoder(st, default_model(), "onnx", cache_dir=tmp_path)
    assert again.path == encoder.path and again.path.stat().st_size > 1_000_000
    assert (again.encode(TEXTS[:1]) * encoder.encode(TEXTS[:1])).sum() > 0.9999


def test_drift_from_pytorch_is_refused(st, cache, monkeypatch):
    monkeypatch.setitem(onnx_encoder.MIN_PROBE_COSINE, "onnx-int8", 1.01)
    with pytest.raises(OnnxUnsupported, match="drifts from PyTorch"):
        OnnxEncoder(st, default_model(), "onnx-int8", cache_dir=cache)


def test_unsupported_module_stack_is_refused(st):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense

    projected = SentenceTransformer(modules=[st[0], st[1], Dense(384, 32)], device="cpu")
    with pytest.raises(OnnxUnsupported, match="module stack Transformer -> Pooling -> Dense"):
        OnnxEncoder(projected, "projected")


def test_embedder_falls_back_to_pytorch_with_a_warning(monkeypatch, caplog, reference):
    def refuse(*args, **kwargs):
        raise OnnxUnsupported("export failed (test)")

    monkeypatch.setattr(embeddings, "OnnxEncoder", refuse)
    monkeypatch.setattr(embeddings, "_encoders", {})
    embedder = SentenceTransformerEmbedder(backend="onnx")
    with caplog.at_level(logging.WARNING, logger="rag.embeddings"):
        assert embedder.runs_on == "torch"
        got = embedder.encode(TEXTS)
    assert "runs on PyTorch: no onnx backend (export failed (test))" in caplog.text
    assert (got * reference).sum(axis=1).min() > 0.9999


def test_backend_is_part_of_the_chroma_config():
    embedder = SentenceTransformerEmbedder(backend="onnx")
    config = embedder.get_config()
    assert config["backend"] == "onnx"
    assert SentenceTransformerEmbedder.build_from_config(config).backend == "onnx"
    # Indexes created before the setting existed reopen with the default backend.
    del config["backend"]
    assert SentenceTransformerEmbedder.build_from_config(config).backend == embeddings.DEFAULT_BACKEND
    with pytest.raises(ValueError, match="unknown embedding backend 'gpu'"):
        SentenceTransformerEmbedder(backend="gpu")


def test_concurrent_encodes_agree_with_sequential_ones(st, cache):
    from concurrent.futures import ThreadPoolExecutor

    encoder = OnnxEncoder(st, default_model(), "onnx", cache_dir=cache)
    expected = [encoder.encode([t], small=True)[0] for t in TEXTS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(
            pool.map(lambda i: encoder.encode([TEXTS[i % len(TEXTS)]], small=i % 2 == 0)[0], range(64))
        )
    for i, vector in enumerate(got):
        np.testing.assert_allclose(vector, expected[i % len(TEXTS)], atol=1e-5)
