"""`apprenti serve`: the Slack bot, in Socket Mode (SLACK_APP_TOKEN set) or over HTTP (--http)."""

from __future__ import annotations

import gc
import logging
import signal

import typer

from bot import metrics
from bot.cli.common import bad_input, runtime

log = logging.getLogger("apprenti.serve")


def start_scheduler(runtime, notifier):
    """The training scheduler (bot/scheduler.py), reporting to the admin channel through `notifier`.
    Returns what stops it."""
    from bot.scheduler import make_scheduler

    runtime.notify = notifier  # the scheduler posts run_queued / run_finished / daily_summary here
    scheduler = make_scheduler(runtime, start=True)
    return lambda: scheduler.shutdown(wait=False)


def share_cpu(workers: int, torch_threads: int = 0) -> None:
    """Give each answer thread its share of the cores for the in-process model, so that its math runs in
    that (low-priority) thread rather than in a pool at normal priority competing with the acks.
    APPRENTI_TORCH_THREADS, when set, wins."""
    import os

    if torch_threads:
        return
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def warm_retrieval(rt) -> None:
    """Search once now, so the index opens and the embedding model loads (and, the first time on a
    machine, is exported to ONNX: ~12 s) at start-up instead of during the first question. A failure
    is logged; questions then report it as they would have."""
    try:
        rt.plugins.hook.retrieve(question="warm up", profile=rt.profiles.default, k=1)
    except Exception as exc:  # noqa: BLE001 - an unreachable index must not stop the bot
        log.warning("retrieval not warmed up: %s", exc)


def warm_pii(rt) -> None:
    """Scrub once now, so the PII plugin's engine (Presidio and spaCy: 10-18 s) loads at start-up
    instead of during the first question."""
    try:
        rt.plugins.hook.find_pii(text="warm up")
    except Exception as exc:  # noqa: BLE001 - the first question reports it as it would have
        log.warning("PII engine not warmed up: %s", exc)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(
    ctx: typer.Context,
    http: bool = typer.Option(
        False, "--http", help="Serve Slack over HTTP (POST /slack/events) instead of Socket Mode."
    ),
    port: int = typer.Option(3000, "--port", help="HTTP port (with --http)."),
    host: str = typer.Option("0.0.0.0", "--host", help="HTTP address to bind (with --http)."),
    no_scheduler: bool = typer.Option(
        False, "--no-scheduler", help="Do not run the training scheduler in this process."
    ),
    workers: int = typer.Option(
        2, "--answer-workers", min=1, max=32, help="Answers generated at the same time."
    ),
):
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP with --http."""
    from bot.slack.app import create_app
    from bot.slack.server import run_http, run_socket_mode

    rt = runtime(ctx)
    settings = rt.settings
    socket_mode = bool(settings.slack_app_token) and not http
    if not socket_mode and not http:
        bad_input(
            "SLACK_APP_TOKEN is not set: set it for Socket Mode, or serve over HTTP with --http --port P "
            "(see docs/slack-setup.md)."
        )
    if not 0 < port < 65536:
        bad_input(f"--port must be between 1 and 65535, not {port}")
    rt.engine  # noqa: B018 - fail on a bad database before connecting to Slack
    metrics.watch_database(rt.engine)
    share_cpu(workers, settings.torch_threads)
    rt.assistant  # noqa: B018 - and on bad profiles or a missing model
    warm_retrieval(rt)
    warm_pii(rt)
    app, services = create_app(rt, answer_workers=workers, socket_mode=socket_mode)
    # Everything loaded so far (the model, the libraries) lives as long as the process: keep it out of
    # the garbage collector's full passes, which would otherwise pause every thread, acks included.
    gc.collect()
    gc.freeze()

    stoppers = [] if no_scheduler else [start_scheduler(rt, rt.notify)]
    signal.signal(signal.SIGTERM, _interrupt)  # uvicorn installs its own while it runs
    try:
        if socket_mode:
            metrics.watch_queue("answers", lambda: services.pool.pending)
            metrics.serve_port(settings.metrics_port)  # over HTTP, /metrics is on the serving port
            run_socket_mode(app, settings.slack_app_token, queue=services.event_queue)
        else:
            run_http(app, services, host=host, port=port, signing_secret=settings.slack_signing_secret)
    except KeyboardInterrupt:
        pass
    finally:
        for stop in stoppers:
            stop()
        services.pool.wait_idle(timeout=30)
        services.pool.shutdown(wait=False)
        services.event_queue.stop(release=True)  # what is still unanswered goes to the other replicas at once


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
