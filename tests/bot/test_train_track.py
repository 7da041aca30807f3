"""`apprenti train --run N` trains a queued run for the run's own track: the system prompt and the
format check it trains and gates with are that track's, decided once before anything is built."""

from __future__ import annotations

import json

import pytest

from bot.runtime import Runtime
from bot.settings import load_settings
from finetune.evaluate import EvalOptions
from storage.examples import add_examples, new_example
from storage.models import ExampleStatus
from storage.runs import acquire_run, get_run
from tests.cli import run_main
from tests.finetune.toy import questions

PROFILES = """\
default: {tone: casual}
channels:
  C-SUPPORT: {track: support, tone: formal, format: json}
"""


@pytest.fixture
def support_run(tmp_path, monkeypatch, tiny_model_dir):
    """A database with approved pairs for the `support` track and a run queued by the scheduler."""
    config = tmp_path / "apprenti.yaml"
    config.write_text(PROFILES)
    for name, value in {
        "APPRENTI_CONFIG": str(config),
        "APPRENTI_BASE_MODEL": str(tiny_model_dir),
        "APPRENTI_MIN_EXAMPLES": "8",
        "APPRENTI_TRAIN_MAX_LENGTH": "256",
    }.items():
        monkeypatch.setenv(name, value)
    engine = Runtime(load_settings()).engine
    add_examples(
        engine,
        [
            new_example(q, json.dumps({"answer": a}), track="support", status=ExampleStatus.approved.value)
            for q, a in questions(3)
        ],
        "test",
    )
    return engine, acquire_run(engine, "support", "scheduler")


def test_a_scheduled_run_trains_and_gates_with_its_own_tracks_prompt_and_format(
    support_run, monkeypatch, capsys
):
    import finetune.pipeline

    engine, run = support_run
    real, seen = finetune.pipeline.run_training, []

    def quick(engine, options, **kw):
        # Keep the real pipeline, with a short evaluation (the tiny model only has to get through it).
        options.evaluation = EvalOptions(max_new_tokens=6, consistency_samples=0, general_limit=2)
        seen.append(options)
        return real(engine, options, **kw)

    monkeypatch.setattr(finetune.pipeline, "run_training", quick)
    code, out, err = run_main(["train", "--run", str(run.id), "--max-steps", "2", "--json"], capsys)
    assert code in (0, 1), err
    outcome = json.loads(out)
    assert outcome["track"] == "support" and outcome["error"] is None, outcome
    options = seen[0]
    assert "formal, professional register" in options.system_prompt
    assert "relaxed register" not in options.system_prompt  # the default track's tone
    assert "one JSON value" in options.system_prompt
    assert options.check_format is not None
    assert options.check_format('{"answer": "yes"}') == [] and options.check_format("plain words")
    assert options.track == "support" and options.trigger == "scheduler"
    # The gate measured the support track's format.
    assert "format_compliance" in outcome["metrics"]["scores"]["candidate"]["target"]
    assert get_run(engine, run.id).status == outcome["status"]


def test_a_track_that_contradicts_the_queued_run_is_refused(support_run, capsys):
    engine, run = support_run
    code, _, err = run_main(["train", "--run", str(run.id), "--track", "default", "--json"], capsys)
    assert code == 2 and "'support'" in err
    assert get_run(engine, run.id).status == "queued"  # not started for the wrong track


def test_the_pipeline_refuses_a_run_of_another_track_instead_of_switching(support_run):
    from finetune.pipeline import RunRefused, TrainOptions, run_training

    engine, run = support_run
    with pytest.raises(RunRefused, match="'support'"):
        run_training(
            engine, TrainOptions(base_model="unused", adapters_dir="unused", track="default"), run_id=run.id
        )
    assert get_run(engine, run.id).status == "queued"
