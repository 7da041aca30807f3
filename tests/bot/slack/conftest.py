"""The real Bolt app against a fake Slack Web API, with signed requests built from real templates."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from slack_bolt import BoltRequest

from bot.llm import LLM, Completion
from bot.runtime import Runtime
from bot.settings import Settings
from tests.slack_fakes import FakeSlack, form_body, signed_headers, template

SECRET = "test-signing-secret"
ADMIN, REVIEWER, AUDITOR, MEMBER, GROUP_REVIEWER = "UADMIN", "UREVIEWER", "UAUDITOR", "UMEMBER", "UGROUPREV"
REVIEWER_GROUP = "SREVIEWERS"
REVIEW_CHANNEL = "CREVIEW"


class FakeLLM(LLM):
    """Answers from a queue (or a fixed reply); an Exception in the queue is raised, a Completion returned."""

    def __init__(self, reply: str = "Holidays are requested in the HR portal.", delay: float = 0.0):
        self.reply = reply
        self.queue: list = []
        self.delay = delay
        self.calls: list[list[dict]] = []

    def generate(self, messages, track="default"):
        self.calls.append(messages)
        if self.delay:
            time.sleep(self.delay)
        item = self.queue.pop(0) if self.queue else self.reply
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Completion):
            return item
        return Completion(text=item, adapter=None, prompt_tokens=10, completion_tokens=5)


@dataclass
class Harness:
    app: object
    services: object
    fake: FakeSlack
    runtime: Runtime
    llm: FakeLLM
    counter: list = field(default_factory=lambda: [0])

    @property
    def engine(self):
        return self.runtime.engine

    def dispatch(
        self,
        body: str,
        *,
        headers: dict | None = None,
        timestamp: int | None = None,
        retry: int | None = None,
        secret: str = SECRET,
    ):
        headers = headers or signed_headers(secret, body, timestamp=timestamp, retry=retry)
        return self.app.dispatch(BoltRequest(body=body, headers=headers))

    def event(self, name: str = "app_mention_event.json", *, event_id: str | None = None, **event_fields):
        """An Events API envelope from a real template, with a fresh event id unless given."""
        body = copy.deepcopy(template(name))
        self.counter[0] += 1
        body["event_id"] = event_id or f"Ev{self.counter[0]:06d}"
        body["event"].update(event_fields)
        return body

    def fresh_ts(self) -> str:
        """A new trigger id or action timestamp: Slack gives every request its own."""
        self.counter[0] += 1
        return f"{time.time():.0f}.{self.counter[0]:06d}"

    def send_event(self, body: dict, **kwargs):
        return self.dispatch(json.dumps(body), **kwargs)

    def action(
        self,
        action_id: str,
        value: str,
        *,
        user: str = MEMBER,
        channel: str = "C111",
        message_ts: str = "111.222",
        view: dict | None = None,
    ):
        payload = copy.deepcopy(template("block_actions_button.json"))
        payload["user"]["id"] = user
        payload["channel"]["id"] = channel
        payload["container"].update({"channel_id": channel, "message_ts": message_ts, "is_ephemeral": False})
        payload["response_url"] = self.fake.response_url(f"action-{user}")
        payload["actions"][0].update(
            {"action_id": action_id, "value": value, "block_id": "b", "action_ts": self.fresh_ts()}
        )
        payload["trigger_id"] = self.fresh_ts()  # each click is its own request, as in Slack
        if view is not None:
            payload.pop("channel")
            payload.pop("response_url")
            payload["container"] = {"type": "view", "view_id": "VHOME"}
            payload["view"] = view
        return self.dispatch(form_body(payload)), payload

    def submit_view(
        self, callback_id: str, values: dict[str, str | None], metadata: dict, *, user: str = MEMBER
    ):
        payload = copy.deepcopy(template("view_submission.json"))
        payload["user"]["id"] = user
        payload["view"]["callback_id"] = callback_id
        payload["view"]["private_metadata"] = json.dumps(metadata)
        payload["trigger_id"] = self.fresh_ts()
        payload["view"]["state"]["values"] = {
            block: {"value": {"type": "plain_text_input", "value": value}} for block, value in values.items()
        }
        return self.dispatch(form_body(payload))

    def command(self, text: str, *, user: str = MEMBER, channel: str = "C111"):
        fields = template("slash_command.form.txt")
        fields.update(
            {
                "command": "/apprenti",
                "text": text,
                "user_id": user,
                "channel_id": channel,
                "response_url": self.fake.response_url(f"command-{user}"),
                "trigger_id": self.fresh_ts(),
            }
        )
        return self.dispatch(urlencode(fields))

    def close(self) -> None:
        self.services.wait_idle(10)
        self.services.pool.shutdown()
        self.services.listeners.shutdown()

    def settle(self, timeout: float = 15.0) -> None:
        """Wait for the answers in flight, then for Bolt's listener threads to finish their calls."""
        assert self.services.wait_idle(timeout)


@pytest.fixture(scope="session", autouse=True)
def warm_pii_engine():
    """Load the PII engine (Presidio and spaCy, 10-18 s) once per session, so that the first test's
    answer does not spend `Harness.settle`'s timeout waiting for it."""
    from plugins.builtin.pii_engine import detect

    detect("warm up")


@pytest.fixture
def fake_slack():
    with FakeSlack() as fake:
        fake.groups[REVIEWER_GROUP] = [GROUP_REVIEWER]
        yield fake


def make_harness(fake, tmp_path, llm=None, **settings) -> Harness:
    from bot.slack.app import create_app
    from bot.slack.notify import make_client

    values = dict(
        home=tmp_path / "home",
        slack_signing_secret=SECRET,
        slack_bot_token="xoxb-test",
        slack_api_url=fake.api_url,
        review_channel=REVIEW_CHANNEL,
        admin_channel="CADMIN",
        admins=[ADMIN],
        reviewers=[REVIEWER, REVIEWER_GROUP],
        auditors=[AUDITOR],
        plugins=["pii"],
    )  # Slack tests need no retrieval or few-shot index
    values.update(settings)
    extra = values.pop("plugins_extra", None)
    runtime = Runtime(Settings(**values), entrypoints=False, plugins_extra=extra)
    llm = llm or FakeLLM()
    runtime.__dict__["llm"] = llm  # the model is the one thing faked here
    client = make_client("xoxb-test", fake.api_url)  # the production client, retry handlers included
    app, services = create_app(runtime, client=client, token_verification=False)
    return Harness(app=app, services=services, fake=fake, runtime=runtime, llm=llm)


@pytest.fixture
def slack(fake_slack, tmp_path):
    harness = make_harness(fake_slack, tmp_path)
    yield harness
    harness.close()
