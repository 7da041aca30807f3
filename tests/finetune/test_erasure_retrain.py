"""A retrain after an erasure is gated against a clean baseline, never the adapter that learnt the
erased data, and a run whose examples are erased while it trains never serves."""

from __future__ import annotations

import pytest

from finetune.config import TrainConfig
from finetune.evaluate import EvalOptions
from finetune.pipeline import TrainOptions, run_training
from finetune.registry import ADAPTER_FILES
from storage.db import open_database, session_scope
from storage.examples import add_examples, new_example
from storage.models import Adapter, ExampleStatus, utcnow

from .toy import questions

pytestmark = pytest.mark.slow


def _options(model, home, **kw) -> TrainOptions:
    return TrainOptions(
        base_model=model,
        adapters_dir=home / "adapters",
        min_examples=4,
        train=TrainConfig(max_steps=2, batch_size=4, max_length=64, qlora=False, progress_bar=False),
        evaluation=EvalOptions(
            max_new_tokens=4, consistency_samples=1, consistency_questions=1, general_limit=2
        ),
        heartbeat_every=0.5,
        auto_promote=False,
        **kw,
    )


@pytest.fixture
def engine(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path / 'apprenti.db'}")
    add_examples(
        engine, [new_example(q, a, status=ExampleStatus.approved.value) for q, a in questions(2)], "test"
    )
    return engine


def test_a_tainted_adapter_in_service_is_not_the_baseline(engine, tiny_model, tmp_path):
    # Its folder holds no loadable weights: comparing with it would fail the run outright.
    folder = tmp_path / "adapters" / "default" / "v1"
    folder.mkdir(parents=True)
    for name in ADAPTER_FILES:
        (folder / name).write_text("{}")
    with session_scope(engine) as s:
        s.add(
            Adapter(
                track="default",
                version=1,
                name="default/v1",
                base_model=tiny_model,
                path=str(folder),
                status="active",
                tainted=True,
                activated_at=utcnow(),
                example_ids=[999],
            )
        )
    outcome = run_training(engine, _options(tiny_model, tmp_path))
    assert outcome.error is None and outcome.adapter == "default/v2", outcome.error
    assert outcome.metrics["baseline"] == "base model"


def test_a_run_whose_examples_are_erased_meanwhile_never_serves(engine, tiny_model, tmp_path, monkeypatch):
    from finetune import pipeline
    from storage.models import Example

    evaluate = pipeline.evaluate_candidate

    def erase_during_the_run(*args, **kwargs):
        with session_scope(engine) as s:
            s.query(Example).filter(Example.id == 1).delete()
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(pipeline, "evaluate_candidate", erase_during_the_run)
    outcome = run_training(
        engine,
        _options(
            tiny_model,
            tmp_path,
        ),
    )
    assert outcome.status == "failed" and "erased while it trained" in outcome.error
    with session_scope(engine) as s:
        (adapter,) = s.query(Adapter).all()
        assert adapter.tainted and adapter.status == "rejected"
