"""Finding and loading a base model: the bundled model's converted folder, a local folder or a hub id;
optionally in 4-bit; checkpoints read without mmap; the C heap handed back after loading and training.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class ModelError(Exception):
    """A model or adapter cannot be loaded; the message names it and says how to fix it."""


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def resolve_model(name: str) -> str:
    """A bundled model's converted folder, a local folder, or a hub id that is already in the local
    cache (or reachable when online)."""
    from finetune import bundled

    if bundled.is_bundled(name):
        try:
            return str(bundled.ensure_converted(name))
        except bundled.BundledModelError as exc:
            raise ModelError(str(exc)) from None
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model folder {path} has no config.json: it is not a Hugging Face model folder."
            )
        return str(path)
    if _looks_like_path(name) or path.exists():
        raise ModelError(
            f"model folder {name} does not exist. Create a test model with `apprenti model make-tiny {name}` "
            "or point APPRENTI_BASE_MODEL at a model folder or hub id."
        )
    from huggingface_hub import constants, snapshot_download

    try:
        return snapshot_download(
            name,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"],
            local_files_only=constants.HF_HUB_OFFLINE,
        )
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types; all mean the same here
        offline = " (HF_HUB_OFFLINE=1: only the local cache is searched)" if constants.HF_HUB_OFFLINE else ""
        raise ModelError(
            f"model {name!r} cannot be loaded{offline}: {type(exc).__name__}. Download it once "
            f"(`hf download {name}`), point APPRENTI_BASE_MODEL at a local folder, or make an offline "
            "test model with `apprenti model make-tiny DIR`."
        ) from None


def parameter_estimate(name: str) -> int | None:
    """About how many parameters a model has, from its config.json alone (None when unknown).
    Bundled models are converted on demand, so their size is known without reading anything."""
    import json

    from finetune import bundled

    if bundled.is_bundled(name):
        return int(float(bundled.BUNDLED[name.strip().lower()].parameters.rstrip("M")) * 1e6)
    config_path = Path(name).expanduser() / "config.json"
    if not config_path.is_file():
        return None
    try:
        c = json.loads(config_path.read_text(encoding="utf-8"))
        c = c.get("text_config", c)
        h, layers, ffn, vocab = (
            c["hidden_size"],
            c["num_hidden_layers"],
            c["intermediate_size"],
            c["vocab_size"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(vocab * h + layers * (4 * h * h + 3 * h * ffn))


def quantization_config(load_in_4bit: bool, compute_dtype: Any = None):
    """NF4 + double quantisation. `compute_dtype` defaults to bf16 on CUDA and fp32 on CPU (CPU matmuls
    without bf16 matrix units are several times faster in fp32, for inference and training alike)."""
    if not load_in_4bit:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if compute_dtype is None:
        compute_dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    # The packed 4-bit weights stay in uint8 storage (bnb's default): same bytes, and no float-typed
    # tensors that the trainer or peft could mistake for weights to cast.
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


@contextmanager
def _read_checkpoints_without_mmap():
    """Make transformers read safetensors shards tensor by tensor with pread instead of mmap.

    With mmap every page of the checkpoint that the loader touches counts in the process's resident
    memory until the whole file is unmapped, so loading a float32 checkpoint into bf16 or 4-bit weights
    briefly holds the full float32 file *and* the converted copy; a checkpoint parameter loaded in its own
    dtype even stays a view into the mapping, pinning the whole file for the model's lifetime. With
    pread each tensor is read, converted (or quantised) and freed; the file stays in the page cache,
    not in the process. Falls back to transformers' own reading when its internals differ."""
    try:
        import transformers.modeling_utils as mu
    except ImportError:  # pragma: no cover
        yield
        return
    original = getattr(mu, "safe_open", None)
    if original is None:
        yield
        return

    def safe_open(file, framework="pt", device="cpu", backend=None, **kwargs):
        if backend == "mmap" and str(device) == "cpu":
            try:
                return original(file, framework=framework, device=device, backend="pread", **kwargs)
            except (TypeError, ValueError):
                pass
        if backend is None:
            return original(file, framework=framework, device=device, **kwargs)
        return original(file, framework=framework, device=device, backend=backend, **kwargs)

    with _LOAD_LOCK:  # one patcher at a time, so the original is always what gets restored
        original = mu.safe_open
        mu.safe_open = safe_open
        try:
            yield
        finally:
            mu.safe_open = original


_LOAD_LOCK = threading.Lock()


def _libc():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover
        return None


def training_heap_settings(mmap_threshold: int = 256 * 1024) -> None:
    """For a training process: serve tensor buffers above `mmap_threshold` bytes with their own
    mappings, returned to the OS when freed. glibc otherwise raises that threshold after the first large
    free (up to 32 MB), and per-step temporaries (dequantised 4-bit weights, activations) then pile up in
    the heap: +150-170 MB of resident memory on a 100M-parameter model, whichever the LoRA flavour."""
    libc = _libc()
    try:
        if libc is not None:
            libc.mallopt(-3, int(mmap_threshold))  # M_MMAP_THRESHOLD
    except AttributeError:  # not glibc
        pass


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc keeps freed tensor buffers otherwise)."""
    libc = _libc()
    try:
        if libc is not None:
            libc.malloc_trim(0)
    except AttributeError:  # not glibc: nothing to do
        pass


def load_base(name: str, *, load_in_4bit: bool = False, device: str | None = None, dtype: Any = None):
    """Load a causal LM and its tokenizer. Returns (model, tokenizer, resolved path)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = resolve_model(name)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        with _read_checkpoints_without_mmap():
            model = AutoModelForCausalLM.from_pretrained(
                path,
                dtype=dtype,
                quantization_config=quantization_config(load_in_4bit),
                device_map={"": device} if (load_in_4bit or device != "cpu") else None,
            )
    except (OSError, ValueError) as exc:
        raise ModelError(f"model {name!r} ({path}) cannot be loaded: {exc}") from None
    release_free_memory()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ModelError(f"model {name!r} has no chat template; use an instruct/chat model.")
    return model, tokenizer, path
