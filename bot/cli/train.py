"""`apprenti train [--track T] [--run N] --json`: one training run, start to finish."""

from __future__ import annotations

import contextlib
import sys

import typer

from bot.cli.common import EXIT_FAILED, bad_input, console, print_json, runtime


def _check_format(rt, track: str):
    """The track's output-format validator, so the gate can compare format compliance."""
    profile = rt.profile_for_track(track)
    if not getattr(profile, "format", None):
        return None
    fmt, options = rt.formats[profile.format], dict(getattr(profile, "format_options", None) or {})
    return lambda answer: fmt.check(answer, options)


def _resolve_run(rt, track: str | None, run_id: int | None, actor: str | None) -> tuple[str, str, str | None]:
    """(track, trigger, actor) of this run, decided once before anything track-dependent is built:
    a queued run's own (--track may only repeat it), else --track or 'default' for an admin run."""
    if run_id is None:
        return track or "default", "admin", actor
    from storage.runs import get_run

    queued = get_run(rt.engine, run_id)
    if queued is None:
        bad_input(f"no training run #{run_id}")
    if track is not None and track != queued.track:
        bad_input(f"run #{run_id} is for track {queued.track!r}, not {track!r}: leave out --track")
    return queued.track, queued.trigger, actor or queued.triggered_by


def _notifier(rt):
    """The admin channel's notifier, when Slack is configured (else None: nothing to post)."""
    s = rt.settings
    if not (s.slack_bot_token and s.admin_channel):
        return None
    from bot.slack.notify import Notifier

    return Notifier.from_settings(s, rt.engine)


def notify_started(rt, notifier, run_id: int | None, track: str) -> None:
    from finetune.dataset import NotEnoughExamples, build_dataset

    try:
        dataset = build_dataset(rt.engine, track, min_examples=1)
    except NotEnoughExamples:
        return
    info = dataset.summary()
    notifier.admin(
        f":hourglass_flowing_sand: Training run #{run_id} for track *{track}* started: "
        f"{info.get('train', '?')} training / {info.get('test', '?')} held-out examples, "
        f"dataset fingerprint `{str(dataset.fingerprint)[:12]}`."
    )


def notify_finished(rt, notifier, outcome) -> None:
    from storage.runs import get_run

    notifier.run_finished(get_run(rt.engine, outcome.run_id))


def train(
    ctx: typer.Context,
    track: str | None = typer.Option(
        None, "--track", help="Which track to train (default: the queued run's, else 'default')."
    ),
    run: int | None = typer.Option(None, "--run", help="A queued run id (what the scheduler spawns)."),
    golden: str | None = typer.Option(None, "--golden", help="Golden file (any import format) for the gate."),
    general: str | None = typer.Option(
        None, "--general", help="General-skills file replacing the shipped one."
    ),
    replay: str | None = typer.Option(
        None, "--replay", help="General data mixed into training against forgetting."
    ),
    dpo: bool = typer.Option(False, "--dpo", help="A DPO pass on (corrected, original) pairs after SFT."),
    max_steps: int = typer.Option(-1, "--max-steps", help="Stop after N steps (smoke tests)."),
    actor: str | None = typer.Option(None, "--actor", help="Who triggers, for the card and audit log."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
):
    """Build the dataset, train, evaluate, gate, register (and activate when the gate passes and
    APPRENTI_AUTO_PROMOTE is on)."""
    from finetune.config import TrainConfig
    from finetune.evaluate import GateConfig
    from finetune.pipeline import RunRefused, TrainOptions, run_training

    rt = runtime(ctx)
    s = rt.settings
    s.ensure_home()
    track, trigger, actor = _resolve_run(rt, track, run, actor)
    options = TrainOptions(
        base_model=s.base_model,
        adapters_dir=s.adapters_dir,
        track=track,
        min_examples=s.min_examples,
        system_prompt=rt.system_prompt_for(track),
        auto_promote=s.auto_promote,
        golden_path=golden,
        general_path=general,
        train=TrainConfig(
            epochs=s.train_epochs,
            learning_rate=s.train_learning_rate,
            step_budget=s.train_step_budget,
            max_length=s.train_max_length,
            replay_path=replay,
            replay_ratio=s.train_replay_ratio,
            cpu_top_layers=s.train_cpu_top_layers or None,
            dpo=dpo,
            max_steps=max_steps,
            progress_bar=not as_json,
        ),
        gate=GateConfig(
            margin=s.gate_margin, max_leak_rate=s.gate_max_leak_rate, general_ratio=s.gate_general_ratio
        ),
        check_format=_check_format(rt, track),
        eval_in_4bit=s.load_in_4bit,
        triggered_by=actor,
        trigger=trigger,
        heartbeat_every=max(5.0, s.heartbeat_timeout / 10),
    )
    rt.apply_torch_threads()
    notifier = _notifier(rt)
    if notifier is not None and run is not None:
        notify_started(rt, notifier, run, track)
    try:
        # The trainer prints its loss log on stdout; with --json stdout carries the one JSON document.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            outcome = run_training(rt.engine, options, run_id=run)
    except RunRefused as exc:
        bad_input(str(exc))
    if notifier is not None:
        notify_finished(rt, notifier, outcome)
    if as_json:
        print_json(outcome.as_dict())
    else:
        console.print(
            f"run #{outcome.run_id} {outcome.status}: "
            + (
                f"{outcome.adapter} ({'activated' if outcome.activated else 'not activated'})"
                if outcome.adapter
                else outcome.error or ""
            )
        )
        for reason in (outcome.verdict or {}).get("reasons", []):
            console.print(f"  - {reason}")
    if not outcome.ok:
        sys.exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
