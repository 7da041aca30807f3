"""`apprenti worker`: the scheduler and training without the Slack face (e.g. on a GPU machine)."""

from __future__ import annotations

import signal
import threading

import typer

from bot import metrics
from bot.cli.common import console, runtime


def worker(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Reap dead runs and start what is due once, then exit."),
):
    """Run the training scheduler: threshold checks, the reaper and the daily summary. Several workers
    (and `apprenti serve` processes) may share one database: one run per track is ever in flight."""
    from bot import scheduler

    rt = runtime(ctx)
    rt.engine  # noqa: B018 - fail on a bad database at once
    if rt.settings.slack_bot_token and rt.settings.admin_channel:
        from bot.slack.notify import Notifier

        rt.notify = Notifier.from_settings(rt.settings, rt.engine)
    if once:
        scheduler.bind(rt)
        started = scheduler.run_check()
        console.print(f"started run(s): {started}" if started else "nothing due")
        return
    metrics.watch_database(rt.engine)
    metrics.serve_port(rt.settings.metrics_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sched = scheduler.make_scheduler(rt)
    console.print(f"worker: checking every {rt.settings.scheduler_interval} s (Ctrl-C to stop)")
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sched.shutdown(wait=False)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
