"""Posting to Slack from outside a request: the scheduler and the trainer report to the admin channel.

    notifier = Notifier.from_settings(settings)          # or Notifier(client, admin_channel=...)
    notifier.admin("Training run #4 for track default started")
    notifier.run_report(run, adapter, candidate=True)   # metrics + Activate/Discard buttons
    notifier.upload(path, title="Loss curve")           # a plot or a report file

The scheduler finds it as `runtime.notify` (set by `apprenti serve`) and calls the three hooks
`run_queued(run, readiness)`, `run_finished(run)` and `daily_summary(summary)`.

Every method returns the Slack response (or None when no admin channel is configured) and never
raises for a Slack error: it is logged, and the caller's work (training) goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.models.blocks import ActionsBlock

from bot import messages as text
from bot.slack import blocks as ui
from bot.slack.reports import metrics_text

log = logging.getLogger("apprenti.slack.notify")


def make_client(token: str | None, base_url: str | None = None) -> WebClient:
    """A WebClient that retries rate-limited calls (honouring Retry-After) and dropped connections."""
    kwargs: dict[str, Any] = {"token": token}
    if base_url:
        kwargs["base_url"] = base_url
    client = WebClient(**kwargs)
    client.retry_handlers.extend(
        [RateLimitErrorRetryHandler(max_retry_count=3), ConnectionErrorRetryHandler(max_retry_count=2)]
    )
    return client


def _card_dataset(adapter) -> dict[str, Any]:
    """The dataset summary an adapter's card records ({} when the card is missing or unreadable)."""
    import json

    try:
        return json.loads((Path(adapter.path) / "card.json").read_text(encoding="utf-8")).get("dataset") or {}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


class Notifier:
    def __init__(self, client: WebClient, admin_channel: str | None = None, engine=None):
        self.client = client
        self.admin_channel = admin_channel
        self.engine = engine  # to look up a finished run's adapter

    @classmethod
    def from_settings(cls, settings, engine=None) -> Notifier:
        return cls(
            make_client(settings.slack_bot_token, settings.slack_api_url), settings.admin_channel, engine
        )

    def admin(self, message: str, blocks: list | None = None):
        """A message in the admin channel (plain text, or Block Kit objects / dicts)."""
        if not self.admin_channel:
            log.info("no admin channel configured; not posted: %s", message)
            return None
        payload = [b.to_dict() if hasattr(b, "to_dict") else b for b in blocks] if blocks else None
        try:
            return self.client.chat_postMessage(channel=self.admin_channel, text=message, blocks=payload)
        except SlackApiError as exc:
            log.error(
                "could not post to the admin channel %s (%s): %s",
                self.admin_channel,
                exc.response.get("error"),
                message,
            )
            return None

    def run_report(self, run, adapter=None, *, candidate: bool = False, summary: str | None = None):
        """A training run's outcome: status, adapter and metrics; a candidate gets Activate/Discard
        buttons."""
        line = text.SLACK_STATUS_RUN.format(
            id=run.id,
            track=run.track,
            status=run.status,
            trigger=run.trigger,
            by=f" by <@{run.triggered_by}>" if run.triggered_by and run.trigger == "admin" else "",
            when=run.created_at.strftime("%Y-%m-%d %H:%M"),
            adapter=f" → {adapter.name}" if adapter is not None else "",
            error=f" — {run.error[:500]}" if run.error else "",
        )
        blocks: list = [ui.section(line)]
        if adapter is not None:
            blocks.append(ui.section(f"*{adapter.name}*{metrics_text(adapter.metrics)}"))
            facts = _card_dataset(adapter).get("facts_to_knowledge")
            if facts:
                blocks.append(ui.section(text.SLACK_RUN_FACTS.format(count=facts)))
        if summary:
            blocks.append(ui.section(summary))
        blocks.append(self.admin_buttons(run.track, adapter if candidate else None))
        return self.admin(line, blocks)

    @staticmethod
    def admin_buttons(track: str, candidate=None) -> ActionsBlock:
        """What an admin may do next, as buttons (slash commands do not work inside agent threads):
        Activate / Discard a candidate, Roll back or Retrain the track, Status."""
        elements = []
        if candidate is not None:
            elements += [
                ui.button(
                    text.SLACK_BUTTON_ACTIVATE.format(name=candidate.name),
                    ui.ACTIVATE,
                    candidate.name,
                    "primary",
                ),
                ui.button(text.SLACK_BUTTON_DISCARD.format(name=candidate.name), ui.DISCARD, candidate.name),
            ]
        elements += [
            ui.button(text.SLACK_BUTTON_ROLLBACK.format(track=track), ui.ROLLBACK, track, "danger"),
            ui.button(text.SLACK_BUTTON_RETRAIN.format(track=track), ui.RETRAIN, track),
            ui.button(text.SLACK_BUTTON_STATUS, ui.STATUS, track),
        ]
        block = f"apprenti-candidate:{candidate.name}" if candidate is not None else f"apprenti-run:{track}"
        return ActionsBlock(block_id=block, elements=elements)

    # --- the scheduler's hooks (bot/scheduler.py calls these on runtime.notify) --------------------
    def run_queued(self, run, state=None):
        by = f" by <@{run.triggered_by}>" if run.triggered_by and run.trigger != "scheduler" else ""
        return self.admin(
            text.SLACK_RUN_QUEUED.format(
                id=run.id,
                track=run.track,
                trigger=run.trigger,
                by=by,
                unused=getattr(state, "unused", "?"),
                approved=getattr(state, "approved", "?"),
            )
        )

    def run_finished(self, run):
        """A run ended (succeeded, rejected by the gate, or failed): its report (the gate's reasons, the
        held-out and general tables, the loss plot), with buttons for a candidate. Posted by the process
        that started the run: the training process itself holds no Slack token."""
        adapter = None
        if run.adapter_name and self.engine is not None:
            from storage.adapters import get_adapter

            adapter = get_adapter(self.engine, run.adapter_name)
        candidate = adapter is not None and adapter.status == "candidate"
        summary = None
        if adapter is not None:
            verdict = (adapter.metrics or {}).get("verdict")
            verdict = verdict if isinstance(verdict, dict) else {}
            reasons = "\n".join(f"• {r}" for r in verdict.get("reasons", []))
            report = Path(adapter.path) / "report.md" if adapter.path else None
            summary = "\n".join(part for part in (reasons, report_table(report)) if part) or None
        posted = self.run_report(run, adapter, candidate=candidate, summary=summary)
        if adapter is not None and adapter.path and (Path(adapter.path) / "report.png").is_file():
            metric = verdict.get("target_metric", "metric")
            self.upload(
                Path(adapter.path) / "report.png", title=f"{adapter.name}: loss and {metric} per version"
            )
        return posted

    def daily_summary(self, summary: dict):
        statuses = ", ".join(
            f"{count} {status}" for status, count in sorted(summary.get("by_status", {}).items())
        )
        lines = [
            text.SLACK_DAILY_SUMMARY.format(
                runs=summary.get("runs", 0), statuses=f" ({statuses})" if statuses else ""
            )
        ]
        for track, state in sorted(summary.get("tracks", {}).items()):
            due = " — due for training" if state.get("due") else ""
            lines.append(
                text.SLACK_DAILY_TRACK.format(
                    track=track, approved=state.get("approved", 0), unused=state.get("unused", 0), due=due
                )
            )
        return self.admin("\n".join(lines))

    def weekly_documents(self, lines: list[str]):
        """The weekly notice: documents that produced corrected answers, with the corrections."""
        return self.admin("\n".join([text.SLACK_WEEKLY_SUSPECTS, *lines]))

    def upload(self, path: str | Path, title: str | None = None, comment: str | None = None):
        """A file (a plot, a report) in the admin channel."""
        if not self.admin_channel:
            return None
        try:
            return self.client.files_upload_v2(
                channel=self.admin_channel,
                file=str(path),
                title=title or Path(path).name,
                initial_comment=comment,
            )
        except SlackApiError as exc:
            log.error("could not upload %s to the admin channel: %s", path, exc.response.get("error"))
            return None


def report_table(report_path: str | Path | None) -> str:
    """The held-out and general tables of report.md, as a code block (Slack renders no Markdown tables)."""
    if not report_path or not Path(report_path).is_file():
        return ""
    lines, keep = [], False
    for line in Path(report_path).read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            keep = line.startswith("## Held-out") or line.startswith("## General skills (")
            if keep:
                lines.append(line[3:])
            continue
        if keep and line.startswith("|") and not line.startswith("|---"):
            lines.append("  ".join(cell.strip().ljust(12) for cell in line.strip("|").split("|")))
    return "```" + "\n".join(lines) + "```" if lines else ""
