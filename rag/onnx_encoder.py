"""A sentence-transformers model run by ONNX Runtime, optionally with int8 weights.

On 2 CPU cores, PyTorch spends most of a one-question encode in per-operator overhead (~20 ms for
MiniLM); ONNX Runtime runs the same graph in ~8 ms, ~4.5 ms with int8 weights, and encodes passages
~1.8x faster with int8. sentence-transformers' own ONNX backend needs `optimum`, which does not
support transformers 5, so the model is exported here with `torch.onnx.export` (eager attention),
fused with ONNX Runtime's BERT optimiser (BERT/RoBERTa/XLM-R: ~13% faster) and quantised with
`onnxruntime.quantization.quantize_dynamic` (per-channel 7-bit-range int8 weights: 0.993 mean cosine
to the float32 vectors on SQuAD passages, where per-tensor int8 gave 0.95; the reduced range avoids
the saturation of AVX2's 8-bit multiply-add and ran ~5% faster here). Activations are quantised per
batch, so with int8 a text's vector moves slightly (cosine > 0.98) with its batch-mates.

The export is cached on disk, keyed by the model's files and the library versions, and checked
against the PyTorch model on a few probe sentences before it is used. Only the common stack
``Transformer -> Pooling -> (Normalize)`` with text prompts is exported; anything else raises
`OnnxUnsupported` and the caller keeps PyTorch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("onnx-int8", "onnx", "torch")
# Bumped when the export or quantisation recipe changes, so old cached files are not reused.
EXPORT_VERSION = 3
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens")
# Minimum cosine between the exported model's vectors and PyTorch's on the probe sentences.
MIN_PROBE_COSINE = {"onnx": 0.9999, "onnx-int8": 0.97}
PROBES = [
    "How many vacation days do new employees get?",
    "Les notes de frais doivent être envoyées avant le 5 du mois suivant.",
    "Deploys to production need two approvals and a green pipeline; rollbacks use the previous tag. " * 4,
    "VPN",
]


class OnnxUnsupported(RuntimeError):
    """This model (or this machine) cannot be run through ONNX Runtime; keep PyTorch."""


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "apprenti" / "embeddings"


def _pooling_config(st) -> dict[str, Any]:
    """The Pooling module's config, or OnnxUnsupported for a stack other than Transformer -> Pooling."""
    names = [type(m).__name__ for m in st]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise OnnxUnsupported(f"module stack {' -> '.join(names)} (only Transformer -> Pooling -> Normalize)")
    pooling = st[1].get_config_dict()
    mode = pooling.get("pooling_mode")
    if mode not in POOLING_MODES:
        raise OnnxUnsupported(f"pooling mode {mode!r}")
    if not pooling.get("include_prompt", True):
        raise OnnxUnsupported("pooling that leaves the prompt out")
    if getattr(st[0], "auto_model", None) is None:
        raise OnnxUnsupported("no transformers model inside the Transformer module")
    return pooling


def _fingerprint(st, model: str, quantised: bool) -> str:
    import onnxruntime
    import torch

    config = st[0].auto_model.config
    parts: dict[str, Any] = {
        "model": model,
        "commit": getattr(config, "_commit_hash", None),
        "config": config.to_json_string(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "int8": quantised,
        "recipe": EXPORT_VERSION,
    }
    folder = Path(model)
    if folder.is_dir():
        parts["files"] = sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()
        )
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _export(st, input_names: list[str], target: Path) -> None:
    """Write the transformer of ``st`` as an ONNX graph with dynamic batch and length axes."""
    import torch

    model = st[0].auto_model

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(input_names, tensors, strict=True))).last_hidden_state

    sample = st.preprocess(["an example sentence", "another one, a little longer than the first"])
    args = tuple(sample[name] for name in input_names)
    axes = {name: {0: "batch", 1: "length"} for name in [*input_names, "last_hidden_state"]}
    was_training = model.training
    attention = getattr(model.config, "_attn_implementation", None)
    model.eval()
    if attention not in (None, "eager"):
        # The eager attention exports as plain MatMul/Softmax, which ONNX Runtime's optimiser fuses
        # into one Attention operator; SDPA's export leaves mask Where/IsNaN nodes (~12% of the time).
        model.set_attn_implementation("eager")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation notices about the legacy exporter
            torch.onnx.export(
                LastHiddenState(),
                args,
                str(target),
                input_names=input_names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
    finally:
        model.train(was_training)
        if attention not in (None, "eager"):
            model.set_attn_implementation(attention)


# Architectures whose graphs ONNX Runtime's BERT optimiser knows how to fuse.
FUSABLE = {"bert", "roberta", "xlm-roberta"}


@contextmanager
def _quiet():
    """ONNX Runtime's optimiser and quantiser log a line per tensor and hints on the root logger."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _optimise(source: Path, target: Path, config) -> bool:
    """Fuse embeddings+LayerNorm, attention, bias+GELU and skip+LayerNorm; False if not applicable."""
    if getattr(config, "model_type", None) not in FUSABLE:
        return False
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet():
        optimised = optimize_model(
            str(source),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
        )
        optimised.save_model_to_file(str(target))
    return True


def _quantise(source: Path, target: Path) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        # DefaultTensorType: the fused operators' outputs have no inferred type; they are float32.
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )


def cached_export(st, model: str, quantised: bool, cache_dir: Path, input_names: list[str]) -> Path:
    """The ONNX file for ``st`` in ``cache_dir``, exported (and quantised) on first use.

    Written to a temporary name and renamed, so concurrent processes never read half a file.
    """
    target = cache_dir / f"{Path(model).name or 'model'}-{_fingerprint(st, model, quantised)}.onnx"
    if target.exists():
        return target
    log.info("exporting the embedding model %s to ONNX in %s (once per machine, ~12 s)", model, cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".export-") as tmp:
            fp32 = Path(tmp) / "model.onnx"
            _export(st, input_names, fp32)
            final = fp32
            if _optimise(fp32, Path(tmp) / "model-fused.onnx", st[0].auto_model.config):
                final = fp32 = Path(tmp) / "model-fused.onnx"
            if quantised:
                final = Path(tmp) / "model-int8.onnx"
                _quantise(fp32, final)
            os.replace(final, target)
    except OSError as exc:
        raise OnnxUnsupported(f"cannot write the exported model to {cache_dir}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - exporters fail in many ways; PyTorch stays available
        raise OnnxUnsupported(f"export failed ({type(exc).__name__}: {exc})") from exc
    return target


class OnnxEncoder:
    """Encode texts with a sentence-transformers model's ONNX export: same tokenizer, prompts and pooling.

    Two sessions share the file: one thread for short inputs (a question: threads waiting for each
    other cost more than they save, and more so on a busy machine) and ``threads`` for batches.
    """

    def __init__(
        self,
        st,
        model: str,
        backend: str = "onnx-int8",
        cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        if backend not in ("onnx", "onnx-int8"):
            raise ValueError(f"not an ONNX backend: {backend!r}")
        self.st = st
        self.backend = backend
        self.pooling = _pooling_config(st)
        probe = st.preprocess(["probe"])
        self.input_names = [
            name for name in ("input_ids", "attention_mask", "token_type_ids") if name in probe
        ]
        self.threads = threads
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        folder = cache_dir or default_cache_dir()
        self.path = cached_export(st, model, backend == "onnx-int8", folder, self.input_names)
        try:
            self._check_against_torch()
        except OnnxUnsupported as exc:
            # A damaged cache file (a disk error, a copy cut short) is exported again, once.
            log.warning("re-exporting %s: %s", self.path, exc)
            self.path.unlink(missing_ok=True)
            self._sessions.clear()
            self.path = cached_export(st, model, backend == "onnx-int8", folder, self.input_names)
            self._check_against_torch()

    def _session(self, threads: int):
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.log_severity_level = 3
                try:
                    self._sessions[threads] = ort.InferenceSession(
                        str(self.path), options, providers=["CPUExecutionProvider"]
                    )
                except Exception as exc:  # noqa: BLE001 - a corrupt cache file, an unsupported operator
                    raise OnnxUnsupported(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
            return self._sessions[threads]

    def _check_against_torch(self) -> None:
        import torch

        prompt = self.st.prompts.get(self.st.default_prompt_name or "", "")
        with torch.no_grad():
            expected = self.st.encode(
                PROBES,
                prompt=prompt,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        got = self.encode(PROBES, prompt=prompt)
        worst = float((np.asarray(expected, dtype=np.float32) * got).sum(axis=1).min())
        if worst < MIN_PROBE_COSINE[self.backend]:
            raise OnnxUnsupported(
                f"the {self.backend} export drifts from PyTorch (cosine {worst:.4f} on a probe sentence)"
            )

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mode = self.pooling["pooling_mode"]
        if mode == "cls":
            return hidden[:, 0]
        weights = mask[..., None].astype(np.float32)
        if mode == "max":
            return np.where(weights > 0, hidden, -1e9).max(axis=1)
        lengths = np.clip(weights.sum(axis=1), 1e-9, None)
        summed = (hidden * weights).sum(axis=1)
        return summed / (np.sqrt(lengths) if mode == "mean_sqrt_len_tokens" else lengths)

    def encode(
        self, texts: list[str], prompt: str | None = None, batch_size: int = 64, small: bool = False
    ) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in the order given.

        Texts are sorted by length so each batch pads little; ``small`` runs on one thread.
        """
        session = self._session(1 if small else (self.threads or _default_threads()))
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            with (
                self._tokenizer_lock
            ):  # a fast tokenizer used by two threads at once can fail ("Already borrowed")
                features = self.st.preprocess([texts[i] for i in rows], prompt=prompt or None)
            feed = {name: features[name].numpy().astype(np.int64) for name in self.input_names}
            hidden = session.run(["last_hidden_state"], feed)[0]
            vectors = self._pool(hidden, feed["attention_mask"])
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out[rows] = vectors / np.clip(norms, 1e-12, None)
        return out

    @property
    def dimension(self) -> int:
        return int(self.pooling.get("embedding_dimension") or self.st.get_embedding_dimension())


def _default_threads() -> int:
    import torch

    return max(1, torch.get_num_threads())
