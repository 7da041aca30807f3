"""The Bolt app factory: one App with Apprenti's middleware and listeners, used by `apprenti serve`
(Socket Mode or HTTP) and by the tests."""

from __future__ import annotations

import logging
import re

from slack_bolt import App
from slack_sdk import WebClient

from bot.roles import Roles
from bot.settings import SettingsError
from bot.slack import agent, asking, commands, feedback, home, review
from bot.slack.middleware import make_authorize, make_drop_retries, make_refuse_replays
from bot.slack.notify import Notifier, make_client
from bot.slack.services import AnswerPool, Services

log = logging.getLogger("apprenti.slack")


def group_lister(client: WebClient):
    def list_members(group_id: str) -> list[str]:
        return list(client.usergroups_users_list(usergroup=group_id)["users"])

    return list_members


def create_app(
    runtime,
    *,
    client: WebClient | None = None,
    answer_workers: int = 2,
    listener_workers: int = 16,
    token_verification: bool = True,
    socket_mode: bool = False,
) -> tuple[App, Services]:
    """Build the Bolt app for a Runtime. `client` defaults to one made from SLACK_BOT_TOKEN and
    SLACK_API_URL; HTTP mode needs SLACK_SIGNING_SECRET (Socket Mode requests are not signed)."""
    settings = runtime.settings
    if client is None:
        if not settings.slack_bot_token:
            raise SettingsError(
                "SLACK_BOT_TOKEN is not set: copy the bot token (xoxb-…) from the Slack app's "
                "OAuth & Permissions page (see docs/slack-setup.md)."
            )
        client = make_client(settings.slack_bot_token, settings.slack_api_url)
    if not socket_mode and not settings.slack_signing_secret:
        raise SettingsError(
            "SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request with it. Copy it "
            "from the Slack app's Basic Information page, or set SLACK_APP_TOKEN for Socket Mode."
        )
    listeners = AnswerPool(listener_workers, name="apprenti-listener", nice=5)
    try:
        app = App(
            client=client,
            signing_secret=settings.slack_signing_secret,
            request_verification_enabled=bool(settings.slack_signing_secret),
            token_verification_enabled=token_verification,
            # Bolt acks each listener from its own pool; the model's work goes to the AnswerPool instead.
            process_before_response=False,
            listener_executor=listeners,
            name="apprenti",
        )
    except Exception as exc:  # auth.test at start-up: a wrong token or an unreachable API
        listeners.shutdown(wait=False)
        raise SettingsError(
            f"Slack refused the bot token or could not be reached ({exc}). Check SLACK_BOT_TOKEN "
            "and, if set, SLACK_API_URL."
        ) from None
    if runtime.notify is None:
        # The scheduler and the admin commands report to the admin channel through runtime.notify.
        runtime.notify = Notifier(client, settings.admin_channel, runtime.engine)
    roles = Roles(
        settings.admins, settings.reviewers, settings.auditors, list_group_members=group_lister(client)
    )
    services = Services(
        runtime=runtime,
        client=client,
        roles=roles,
        pool=AnswerPool(answer_workers, nice=15),
        listeners=listeners,
        review_channel=settings.review_channel,
        admin_channel=settings.admin_channel,
    )

    app.use(make_refuse_replays(services))
    app.use(make_drop_retries(services))
    app.use(make_authorize(services))
    asking.register(app, services)
    agent.register(app, services)  # after the middleware above: Bolt's Assistant is middleware too
    feedback.register(app, services)
    review.register(app, services)
    commands.register(app, services)
    home.register(app, services)
    _register_fallbacks(app)
    return app, services


def _register_fallbacks(app: App) -> None:
    """Registered last: anything no listener claimed is acknowledged and logged, so Slack shows no error."""

    @app.action(re.compile(".*"))
    def unknown_action(ack, action):
        ack()
        log.warning("ignored unknown action %r", action.get("action_id"))

    @app.view(re.compile(".*"))
    def unknown_view(ack, view):
        ack()
        log.warning("ignored unknown view %r", view.get("callback_id"))

    @app.shortcut(re.compile(".*"))
    def unknown_shortcut(ack, shortcut):
        ack()
        log.warning("ignored unknown shortcut %r", shortcut.get("callback_id"))

    @app.error
    def on_error(error, body):
        log.error("listener failed on %s: %s", body.get("type") or body.get("command"), error, exc_info=error)
