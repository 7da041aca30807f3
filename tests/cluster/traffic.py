"""What Slack sends a cluster, and what it got back: signed Events API and interactivity requests
posted over HTTP to the replicas, and the answers read from the Web API stand-in. Used by the fault
tests (tests/cluster) and the load benchmark (bench/cluster_load.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from bot.slack.standin import BOT_USER, TEAM, SlackStandIn, form_body, signed_headers

CHANNEL = "C111"


def mention(event_id: str, ts: str, text: str, *, user: str = "UASKER", channel: str = CHANNEL) -> dict:
    """An app_mention envelope, as Slack sends it."""
    return {
        "token": "verification-token",
        "team_id": TEAM,
        "api_app_id": "AAPPRENTI",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        "event": {
            "type": "app_mention",
            "user": user,
            "text": f"<@{BOT_USER}> {text}",
            "ts": ts,
            "channel": channel,
            "event_ts": ts,
        },
    }


def click(user: str, action_id: str, value: str, *, channel: str, message_ts: str) -> dict:
    """A block_actions payload: `user` clicked a button on the message `message_ts`."""
    return {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "example"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "AAPPRENTI",
        "token": "verification-token",
        "trigger_id": f"trigger-{user}-{time.monotonic_ns()}",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "channel": {"id": channel, "name": channel.lower()},
        "message": {"type": "message", "ts": message_ts, "bot_id": "BAPPRENTI"},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "action_ts": str(time.time()),
            }
        ],
    }


@dataclass
class Sent:
    """One request as Slack made it: where it went, its HTTP status and how long the ack took."""

    replica: int
    status: int
    seconds: float


@dataclass
class Sender:
    """Posts signed requests to the replicas, as Slack would: each request signed when it is sent."""

    urls: list[str]
    secret: str
    sent: list[Sent] = field(default_factory=list)

    def post(self, replica: int, raw: str, retry: int | None = None, timeout: float = 10.0) -> int:
        headers = signed_headers(self.secret, raw, retry=retry)
        started = time.perf_counter()
        try:
            status = httpx.post(
                f"{self.urls[replica]}/slack/events", content=raw, headers=headers, timeout=timeout
            ).status_code
        except httpx.TransportError:
            status = 0  # connection refused or reset: Slack counts it as a failure, and retries
        self.sent.append(Sent(replica, status, time.perf_counter() - started))
        return status

    def event(self, replica: int, body: dict, retry: int | None = None) -> int:
        return self.post(replica, json.dumps(body), retry)

    def action(self, replica: int, payload: dict) -> int:
        return self.post(replica, form_body(payload))

    async def post_async(
        self, client: httpx.AsyncClient, replica: int, raw: str, retry: int | None = None
    ) -> int:
        headers = signed_headers(self.secret, raw, retry=retry)
        started = time.perf_counter()
        try:
            status = (
                await client.post(f"{self.urls[replica]}/slack/events", content=raw, headers=headers)
            ).status_code
        except httpx.TransportError:
            status = 0
        self.sent.append(Sent(replica, status, time.perf_counter() - started))
        return status

    def spread(
        self,
        bodies: list[dict],
        *,
        retry_elsewhere: bool = True,
        concurrency: int = 20,
        first_replica: int = 0,
    ) -> None:
        """Each event to one replica (in turn), and, as Slack's retry, once more to the next replica,
        `concurrency` requests in flight."""

        async def run():
            limit = asyncio.Semaphore(concurrency)
            async with httpx.AsyncClient(
                timeout=30, limits=httpx.Limits(max_connections=concurrency)
            ) as client:

                async def one(i: int, body: dict):
                    raw = json.dumps(body)
                    home = (first_replica + i) % len(self.urls)
                    async with limit:
                        await self.post_async(client, home, raw)
                    if retry_elsewhere:
                        async with limit:
                            await self.post_async(client, (home + 1) % len(self.urls), raw, retry=1)

                await asyncio.gather(*(one(i, body) for i, body in enumerate(bodies)))

        asyncio.run(run())


def replies(standin: SlackStandIn, channel: str, thread_ts: str) -> list[dict]:
    """The app's complete replies in a thread: finished streams and posted messages (an answer's
    notice included); a stream a dead replica left open does not count."""
    return [
        m
        for m in standin.messages(channel, thread_ts)
        if not m["ephemeral"] and (not m["streamed"] or m.get("stopped"))
    ]


def reply_counts(standin: SlackStandIn, threads: list[str], channel: str = CHANNEL) -> Counter:
    """Thread ts -> complete replies in it (as `replies` counts them, in one pass over the transcript)."""
    wanted = set(threads)
    counts = Counter({ts: 0 for ts in threads})
    for m in standin.messages(channel):
        if m["thread_ts"] in wanted and not m["ephemeral"] and (not m["streamed"] or m.get("stopped")):
            counts[m["thread_ts"]] += 1
    return counts


def wait_answered(standin: SlackStandIn, threads: list[str], timeout: float, channel: str = CHANNEL) -> float:
    """Wait until every thread has a reply; returns the seconds it took (fails after `timeout`)."""
    started = time.monotonic()
    while True:
        counts = reply_counts(standin, threads, channel)
        missing = [ts for ts in threads if counts[ts] == 0]
        if not missing:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"{len(missing)} of {len(threads)} questions unanswered after {timeout:.0f} s: {missing[:5]}"
            )
        time.sleep(0.2)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
