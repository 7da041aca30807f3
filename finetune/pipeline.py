"""One training run end to end: dataset -> training -> evaluation -> gate -> registration
(-> activation when the gate passes and auto-promote is on), with the run row as lease and heartbeat.

This is what `apprenti train [--track T] [--run N]` executes; the scheduler spawns it with --run.
Any failure (too few examples, out of memory, disk full, an exception, a cancellation, a lost lease)
marks the run failed with the reason, leaves no registered adapter and never touches the active one.
A process killed outright leaves only a `.run-N` work folder, removed by the next run of the track,
and a run whose heartbeat stops, which the scheduler marks failed.
"""

from __future__ import annotations

import gc
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from finetune.config import TrainConfig
from finetune.dataset import DEFAULT_SYSTEM_PROMPT, NotEnoughExamples, TrainingSet, build_dataset
from finetune.evaluate import EvalOptions, GateConfig, evaluate_candidate, gate, write_report
from finetune.general import load_general
from finetune.registry import Registry, folder_ok
from finetune.train import TrainingCancelled, train_adapter
from storage.models import AdapterStatus, RunStatus
from storage.runs import acquire_run, finish_run, get_run, heartbeat, start_run

log = logging.getLogger(__name__)


class RunRefused(Exception):
    """The run cannot start (unknown id, already running or finished, another run holds the track)."""


@dataclass
class TrainOptions:
    """Everything a run needs, as plain values (bot/settings.py fills it from the environment)."""

    base_model: str
    adapters_dir: str | Path
    track: str = "default"
    min_examples: int = 50
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    auto_promote: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    evaluation: EvalOptions = field(default_factory=EvalOptions)
    golden_path: str | Path | None = None
    general_path: str | Path | None = None  # None: the shipped general-skills set
    check_format: Callable[[str], list[str]] | None = None
    eval_in_4bit: bool = False
    triggered_by: str | None = None
    trigger: str = "admin"
    keep_versions: int = 5
    heartbeat_every: float = 15.0


@dataclass
class RunOutcome:
    """What `apprenti train --json` prints."""

    run_id: int | None
    track: str
    status: str  # succeeded / rejected / failed
    adapter: str | None = None
    activated: bool = False
    verdict: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    dataset: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    report: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != RunStatus.failed.value

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class _Heartbeat:
    """Beats in the background for the whole run; notices when the lease is lost (run marked failed)."""

    def __init__(self, engine: Engine, run_id: int, every: float):
        self.engine, self.run_id, self.every = engine, run_id, every
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"apprenti-heartbeat-{run_id}", daemon=True)

    def _loop(self):
        while not self._stop.wait(self.every):
            try:
                if not heartbeat(self.engine, self.run_id):
                    self.lost.set()
                    return
            except Exception:  # noqa: BLE001 - a transient database error must not kill training
                log.exception("heartbeat failed")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def _claim(engine: Engine, options: TrainOptions, run_id: int | None, log_path: str | None) -> int:
    if run_id is None:
        run = acquire_run(engine, options.track, options.trigger, options.triggered_by)
        if run is None:
            raise RunRefused(f"a training run is already queued or running for track {options.track!r}")
        run_id = run.id
    else:
        run = get_run(engine, run_id)
        if run is None:
            raise RunRefused(f"no training run #{run_id}")
        if run.track != options.track:
            # Everything track-dependent (system prompt, format check) was built for options.track.
            raise RunRefused(f"run #{run_id} is for track {run.track!r}, not {options.track!r}")
    if not start_run(engine, run_id, log_path=log_path):
        raise RunRefused(
            f"run #{run_id} is not queued (it is {get_run(engine, run_id).status}); "
            "the scheduler queues a new run"
        )
    return run_id


def _history(registry: Registry, track: str, metric: str) -> list[tuple[str, float]]:
    points = []
    for adapter in registry.list(track):
        value = (adapter.metrics or {}).get("scores", {}).get("candidate", {}).get("target", {}).get(metric)
        if value is not None:
            points.append((adapter.name, float(value)))
    return points[-8:]


def run_training(
    engine: Engine,
    options: TrainOptions,
    *,
    run_id: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_log: Callable[[dict], Any] | None = None,
    log_path: str | None = None,
) -> RunOutcome:
    """Run the whole pipeline once for options.track (or for the queued run `run_id`).

    Raises RunRefused when the run cannot start; every other failure is returned as a failed
    RunOutcome with the run row marked failed."""
    run_id = _claim(engine, options, run_id, log_path)
    registry = Registry(engine, options.adapters_dir, keep=options.keep_versions)
    registry.clean_work_folders(options.track)
    work = registry.work_folder(options.track, run_id)
    outcome = RunOutcome(run_id=run_id, track=options.track, status=RunStatus.failed.value)
    try:
        with _Heartbeat(engine, run_id, options.heartbeat_every) as beat:
            stop = lambda: beat.lost.is_set() or bool(should_stop and should_stop())  # noqa: E731
            _run(engine, options, registry, run_id, work, outcome, stop, on_log)
            if beat.lost.is_set():
                raise TrainingCancelled("the run's lease was lost (marked failed by the scheduler)")
    except NotEnoughExamples as exc:
        outcome.error = str(exc)
    except TrainingCancelled as exc:
        outcome.error = str(exc)
    except KeyboardInterrupt:
        outcome.error = "interrupted"
        _fail(engine, registry, outcome, work)
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is reported on the run row
        log.exception("training run %s failed", run_id)
        outcome.error = str(exc) or type(exc).__name__
    if outcome.error:
        _fail(engine, registry, outcome, work)
        return outcome
    finish_run(engine, run_id, outcome.status, adapter_name=outcome.adapter)
    shutil.rmtree(work, ignore_errors=True)
    registry.apply_retention(options.track)
    return outcome


def _fail(engine: Engine, registry: Registry, outcome: RunOutcome, work: Path) -> None:
    outcome.status = RunStatus.failed.value
    if outcome.adapter:
        # Registered but the run failed afterwards (e.g. activation refused): never leave it activatable
        # as if the run had succeeded; the active adapter is unchanged either way.
        try:
            adapter = registry.get(outcome.adapter)
            if adapter.status != AdapterStatus.active.value:
                registry.discard(outcome.adapter, "system")
        except Exception:  # noqa: BLE001
            log.exception("cleaning up %s failed", outcome.adapter)
        outcome.adapter = None
    shutil.rmtree(work, ignore_errors=True)
    finish_run(engine, outcome.run_id, RunStatus.failed, error=outcome.error)


def _erased(engine: Engine, example_ids) -> list[int]:
    """The ids among `example_ids` whose example no longer exists (erased since the dataset was built)."""
    from sqlmodel import select

    from storage.db import session_scope
    from storage.models import Example

    wanted = set(example_ids)
    if not wanted:
        return []
    with session_scope(engine) as session:
        present = set(session.exec(select(Example.id).where(Example.id.in_(wanted))))
    return sorted(wanted - present)


def _run(
    engine,
    options: TrainOptions,
    registry: Registry,
    run_id: int,
    work: Path,
    outcome: RunOutcome,
    stop,
    on_log,
) -> None:
    from finetune.formats import read_records
    from finetune.model import ChatModel

    dataset: TrainingSet = build_dataset(
        engine, options.track, system_prompt=options.system_prompt, min_examples=options.min_examples
    )
    outcome.dataset = dataset.summary()
    golden = list(dataset.golden)
    if options.golden_path:
        golden += read_records(options.golden_path, system_prompt=options.system_prompt)
    general = load_general(options.general_path)

    work.mkdir(parents=True, exist_ok=True)
    candidate_dir = work / "adapter"
    result = train_adapter(
        options.base_model,
        dataset.train,
        candidate_dir,
        options.train,
        preferences=dataset.preferences,
        should_stop=stop,
        on_log=on_log,
    )
    outcome.training = result.summary()
    gc.collect()
    if stop():
        raise TrainingCancelled("training was cancelled")

    chat = ChatModel.load(options.base_model, load_in_4bit=options.eval_in_4bit)
    active = registry.active(options.track)
    if active is not None and not folder_ok(active):
        log.warning("active adapter %s has no folder; comparing with the base model", active.name)
        active = None
    if active is not None and active.tainted:
        # An erasure retrain must beat a clean baseline, never the adapter that learnt the erased data.
        log.warning("active adapter %s holds erased data; comparing with the base model", active.name)
        active = None
    if active is not None:
        chat.load_adapter(active.name, active.path)
    chat.load_adapter("candidate", candidate_dir)
    # General questions are asked with the track's system prompt, as the adapter will be asked them.
    eval_options = replace(
        options.evaluation,
        system_prompt=options.evaluation.system_prompt or options.system_prompt,
        cache_dir=options.evaluation.cache_dir or Path(options.adapters_dir) / ".eval-cache",
    )
    evaluation = evaluate_candidate(
        chat,
        "candidate",
        active=active.name if active else None,
        held_out=dataset.test,
        golden=golden,
        general=general,
        check_format=options.check_format,
        options=eval_options,
    )
    del chat
    gc.collect()
    verdict = gate(evaluation, options.gate)
    outcome.verdict = verdict.as_dict()
    outcome.metrics = {**evaluation.as_dict(), "baseline": active.name if active else "base model"}
    if stop():
        raise TrainingCancelled("training was cancelled")

    version = registry.list(options.track)
    name_hint = f"{options.track}/v{max([a.version for a in version], default=0) + 1}"
    write_report(
        candidate_dir,
        name_hint,
        evaluation,
        verdict,
        loss_log=result.loss_log + result.dpo_loss_log,
        history=_history(registry, options.track, options.gate.target_metric),
        dataset=outcome.dataset,
        training=outcome.training,
    )
    status = AdapterStatus.candidate if verdict.passed else AdapterStatus.rejected
    adapter = registry.register(
        candidate_dir,
        track=options.track,
        base_model=options.base_model,
        status=status,
        dataset_fingerprint=dataset.fingerprint,
        example_ids=dataset.example_ids,
        hyperparameters={
            **options.train.hyperparameters(),
            "system_prompt": options.system_prompt,
            "gate": options.gate.__dict__,
        },
        metrics={**outcome.metrics, "verdict": verdict.as_dict(), "training": outcome.training},
        run_id=run_id,
        triggered_by=options.triggered_by or options.trigger,
        extra_card={"dataset": outcome.dataset, "train_ids": dataset.train_ids, "test_ids": dataset.test_ids},
    )
    outcome.adapter = adapter.name
    outcome.report = str(Path(adapter.path) / "report.md")
    erased = _erased(engine, dataset.example_ids)
    if erased:
        # A person was erased while this run trained on their data: it must never serve (the run fails,
        # which discards it); the erasure's retrain, or the next one, trains without them.
        registry.mark_tainted(erased, "system")
        raise RuntimeError(
            f"{len(erased)} example(s) of this run were erased while it trained; "
            "its adapter is discarded. Retrain."
        )
    if verdict.passed and options.auto_promote:
        registry.activate(adapter.name, "auto-promote")
        outcome.activated = True
    outcome.status = RunStatus.succeeded.value if verdict.passed else RunStatus.rejected.value
