from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "formats"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # Tiny models are dominated by per-op overhead: a second thread only adds contention.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A random Llama model that can learn a toy task in a few dozen steps (wider initialisation)."""
    from finetune.tiny import make_tiny

    return str(make_tiny(tmp_path_factory.mktemp("models") / "tiny", initializer_range=0.1))


@pytest.fixture
def engine(tmp_path):
    from storage.db import open_database

    return open_database(f"sqlite:///{tmp_path / 'apprenti.db'}")


@pytest.fixture
def samples() -> Path:
    """The third-party training-data samples in tests/data/formats."""
    return SAMPLES
