"""The App Home: adapters in service with their metrics, the review queue, recent training runs, and
for admins Retrain / Rollback / Status buttons (and Activate / Discard for candidates). Slash
commands do not work inside agent threads, so every admin action is a button here and on the
training reports; the roles middleware checks the clicking user."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ActionsBlock, DividerBlock, HeaderBlock, PlainTextObject
from slack_sdk.models.views import View

from bot import messages as text
from bot.roles import ADMIN, describe
from bot.slack import blocks as ui
from bot.slack import reports
from bot.slack.middleware import tell_privately
from bot.slack.services import Services
from storage.adapters import list_adapters
from storage.examples import list_examples
from storage.models import AdapterStatus, ExampleStatus

log = logging.getLogger("apprenti.slack.home")
HOME_QUEUE = 5


def home_view(services: Services, user: str) -> dict:
    ops = services.operations
    roles = services.roles.roles_of(user)
    tracks = ops.tracks()
    blocks: list = [
        HeaderBlock(text=PlainTextObject(text=text.SLACK_HOME_TITLE)),
        ui.section(text.SLACK_HOME_INTRO.format(roles=describe(roles))),
        DividerBlock(),
        ui.section("\n".join([text.SLACK_HOME_ADAPTERS, *reports.adapter_lines(services.engine, tracks)])),
    ]
    if ADMIN in roles:
        buttons = [ui.button(text.SLACK_BUTTON_STATUS, ui.STATUS, "all")]
        for track in tracks[:10]:
            buttons.append(ui.button(text.SLACK_BUTTON_RETRAIN.format(track=track), ui.RETRAIN, track))
            buttons.append(
                ui.button(text.SLACK_BUTTON_ROLLBACK.format(track=track), ui.ROLLBACK, track, "danger")
            )
        for adapter in list_adapters(services.engine):
            if adapter.status == AdapterStatus.candidate.value and len(buttons) < 23:
                buttons.append(
                    ui.button(
                        text.SLACK_BUTTON_ACTIVATE.format(name=adapter.name),
                        ui.ACTIVATE,
                        adapter.name,
                        "primary",
                    )
                )
                buttons.append(
                    ui.button(text.SLACK_BUTTON_DISCARD.format(name=adapter.name), ui.DISCARD, adapter.name)
                )
        if buttons:
            blocks.append(ActionsBlock(block_id="apprenti-admin", elements=buttons[:25]))
    blocks.append(DividerBlock())
    blocks.append(ui.section(text.SLACK_HOME_PENDING.format(count=reports.pending_count(services.engine))))
    if services.roles.can(user, "review"):
        for example in list_examples(services.engine, status=ExampleStatus.pending.value, limit=HOME_QUEUE):
            blocks.extend(ui.review_blocks(example, compact=True))
    blocks.append(DividerBlock())
    runs = reports.run_lines(services.engine, errors=services.roles.can(user, "status"))
    blocks.append(ui.section("\n".join([text.SLACK_HOME_RUNS, *runs])))
    if services.roles.can(user, "status"):
        blocks.append(DividerBlock())
        blocks.append(
            ui.section(ui.clip("\n".join(reports.knowledge_lines(services.engine)), ui.SECTION_LIMIT))
        )
    blocks.append(DividerBlock())
    blocks.append(ui.section(ui.clip("\n".join(reports.advice_lines(services.runtime)), ui.SECTION_LIMIT)))
    return View(type="home", blocks=blocks[:100]).to_dict()


def publish_home(services: Services, user: str) -> None:
    try:
        services.client.views_publish(user_id=user, view=home_view(services, user))
    except SlackApiError as exc:
        log.error("could not publish the App Home for %s: %s", user, exc.response.get("error"))


def register(app, services: Services) -> None:
    @app.event("app_home_opened", matchers=[lambda event: event.get("tab", "home") == "home"])
    def on_home(ack, event):
        ack()
        publish_home(services, event["user"])

    @app.action(ui.STATUS)
    def on_status(ack, body):
        ack()
        user = body["user"]["id"]
        ops = services.operations
        tell_privately(
            services,
            body,
            user,
            reports.status_text(services.engine, ops.tracks(), reports.advice_lines(services.runtime)),
        )

    @app.action(ui.RETRAIN)
    @app.action(ui.ROLLBACK)
    @app.action(ui.ACTIVATE)
    @app.action(ui.DISCARD)
    def on_admin(ack, body, action):
        ack()
        user, value = body["user"]["id"], action["value"]
        ops = services.operations
        message = {
            ui.RETRAIN: lambda: ops.retrain(value, user),
            ui.ROLLBACK: lambda: ops.rollback(value, user),
            ui.ACTIVATE: lambda: ops.activate(value, user),
            ui.DISCARD: lambda: ops.discard(value, user),
        }[action["action_id"]]()
        tell_privately(services, body, user, message)
        if (body.get("view") or {}).get("type") == "home":
            publish_home(services, user)
