"""Slack ack latency under load: `apprenti serve --http` on loopback, answering with the tiny model.

Sends N signed app_mention events (plus Slack-style retries of some of them) at a given concurrency
to POST /slack/events, measures each ack's latency, then waits until every answer has been streamed
to the fake Slack Web API (chat.startStream … chat.stopStream) and counts lost and duplicate answers.
The same load is sent to a bare Bolt app (one listener that only acks, Bolt's own Starlette adapter
under uvicorn), measured in the same run, as the baseline.

It also counts the Web API calls one answer costs: in the run, and for a longer answer written at a
local model's pace, streamed (bot/slack/streaming.py) vs the chat.update loop Apprenti used before
(a placeholder, the whole text re-sent every 1.5 s, a final update), both against the same fake.

    python -m bench.slack_ack [--events 1000 --concurrency 50 --retries 100] [--no-write]

Targets: ack p99 <= 100 ms, 0 events lost, 0 duplicate answers. Exit code 1 when one is missed.
Writes its section of docs/benchmarks.md (between the bench:slack-ack markers), keeping the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the bare server runs this file as a script

from bench._docs import write_section  # noqa: E402
from tests.slack_fakes import FakeSlack, signed_headers, template  # noqa: E402

SECRET = "bench-signing-secret"
ANSWER_METHODS = (
    "assistant.threads.setStatus",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "chat.postMessage",
    "chat.update",
)


def finished(fake: FakeSlack) -> list[dict]:
    """Answers that reached their end: streamed messages stopped with the tail (sources, buttons)."""
    return [m for m in fake.streams() if m["stopped"] and m["blocks"]]


def calls_by_method(fake: FakeSlack) -> Counter:
    return Counter(c["_method"] for c in fake.calls() if c["_method"] in ANSWER_METHODS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def events(n: int, start: int = 0) -> list[dict]:
    base = template("app_mention_event.json")
    out = []
    for i in range(start, start + n):
        body = json.loads(json.dumps(base))
        body["event_id"] = f"EvBench{i:06d}"
        body["event"]["ts"] = body["event"]["event_ts"] = f"1700000000.{i:06d}"
        body["event"]["text"] = f"<@UAPPRENTI> Question {i}: how do I request holidays?"
        body["event"]["user"] = f"U{i % 37:05d}"
        out.append(body)
    return out


async def load(
    url: str, bodies: list[tuple[str, int | None]], concurrency: int
) -> tuple[list[float], Counter]:
    """Closed loop: `concurrency` clients, each sending its next request when the previous is acked.
    (aiohttp as the client: httpx's async pool costs more CPU per request than the servers measured.)"""
    import aiohttp

    latencies: list[float] = []
    statuses: Counter = Counter()
    pending = list(reversed(bodies))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker():
            while pending:
                raw, retry = pending.pop()
                headers = signed_headers(SECRET, raw, retry=retry)
                started = time.perf_counter()
                try:
                    async with session.post(url, data=raw.encode(), headers=headers) as response:
                        await response.read()
                        statuses[response.status] += 1
                except (TimeoutError, aiohttp.ClientError) as exc:
                    statuses[type(exc).__name__] += 1
                latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


def wait_ready(base: str, process: subprocess.Popen, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code in (200, 404):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not start")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def workload(n: int, retries: int, start: int = 0) -> list[tuple[str, int | None]]:
    bodies = [json.dumps(b) for b in events(n, start)]
    # Slack's retries arrive later than the original; interleave them after their original.
    items: list[tuple[str, int | None]] = [(raw, None) for raw in bodies]
    step = max(1, n // max(1, retries))
    for k, i in enumerate(range(0, n, step)):
        if k >= retries:
            break
        items.insert(min(len(items), i + 2 * k + 50), (bodies[i], 1))
    return items


def run_bare(fake: FakeSlack, items, concurrency: int, warmup) -> dict:
    port = free_port()
    env = {**os.environ, "BENCH_SLACK_API_URL": fake.api_url, "BENCH_PORT": str(port)}
    process = subprocess.Popen([sys.executable, __file__, "--bare-server"], env=env, cwd=REPO)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        asyncio.run(load(f"http://127.0.0.1:{port}/slack/events", warmup, concurrency))
        started = time.perf_counter()
        latencies, statuses = asyncio.run(load(f"http://127.0.0.1:{port}/slack/events", items, concurrency))
        elapsed = time.perf_counter() - started
    finally:
        stop(process)
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed}


def bare_server() -> None:
    """A bare Bolt app: one app_mention listener that only acks, on Bolt's Starlette adapter."""
    import logging

    import uvicorn
    from slack_bolt import App
    from slack_bolt.adapter.starlette import SlackRequestHandler
    from slack_sdk import WebClient
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    logging.basicConfig(level=logging.ERROR)
    app = App(
        client=WebClient(token="xoxb-bench", base_url=os.environ["BENCH_SLACK_API_URL"]),
        signing_secret=SECRET,
        token_verification_enabled=False,
    )

    @app.event("app_mention")
    def mention(ack):
        ack()

    handler = SlackRequestHandler(app)

    async def endpoint(request: Request):
        return await handler.handle(request)

    api = Starlette(routes=[Route("/slack/events", endpoint, methods=["POST"])])
    uvicorn.run(
        api, host="127.0.0.1", port=int(os.environ["BENCH_PORT"]), log_level="error", access_log=False
    )


def run_apprenti(
    fake: FakeSlack,
    items,
    warmup,
    concurrency: int,
    n: int,
    model: str,
    home: Path,
    tokens: int,
    answer_timeout: float,
) -> dict:
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "APPRENTI_HOME": str(home),
        "APPRENTI_BASE_MODEL": model,
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.api_url,
        "APPRENTI_MAX_NEW_TOKENS": str(tokens),
        "APPRENTI_PLUGINS": "pii",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("SLACK_APP_TOKEN", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli.main",
            "serve",
            "--http",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-scheduler",
        ],
        env=env,
        cwd=home,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        fake.reset()
        # Warm-up: the measured load starts once the model is busy answering (its first answer is out).
        asyncio.run(load(f"{base}/slack/events", warmup, concurrency))
        fake.wait_for("chat.stopStream", 1, timeout=answer_timeout)
        backlog = httpx.get(f"{base}/healthz").json().get("answers_in_progress", 0)
        before = len(finished(fake))
        started = time.perf_counter()
        latencies, statuses = asyncio.run(load(f"{base}/slack/events", items, concurrency))
        acked = time.perf_counter() - started
        during = len(finished(fake)) - before  # out while the load ran
        # every event gets one streamed message, stopped with the answer's tail
        try:
            fake.wait_for("chat.stopStream", n + len(warmup), timeout=answer_timeout)
        except AssertionError:
            pass
        time.sleep(1.0)  # a late duplicate would show up here
        answered = time.perf_counter() - started
    finally:
        stop(process)
    started_in = Counter(m["thread_ts"] for m in fake.streams())
    ended_in = Counter(m["thread_ts"] for m in finished(fake))
    expected = {f"1700000000.{i:06d}" for i in range(n + len(warmup))}
    lost = sorted(expected - set(ended_in))
    duplicates = sum(k - 1 for k in started_in.values() if k > 1) + sum(
        k - 1 for k in ended_in.values() if k > 1
    )
    methods = calls_by_method(fake)
    return {
        "latencies": latencies,
        "statuses": statuses,
        "elapsed": acked,
        "answered": answered,
        "lost": len(lost),
        "duplicates": duplicates,
        "during": during,
        "backlog": backlog,
        "calls_per_answer": sum(methods.values()) / max(1, len(ended_in)),
        "methods": methods,
    }


class UpdateLoop:
    """The baseline for Web API calls: how Apprenti showed an answer before streaming. A placeholder
    message, the whole text re-sent with chat.update every 1.5 s while the model writes, then the
    finished answer in a last chat.update."""

    def __init__(self, client, channel: str, thread_ts: str, interval: float = 1.5):
        self.client, self.channel, self.interval = client, channel, interval
        from bot.messages import SLACK_THINKING

        self.ts = client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=SLACK_THINKING)["ts"]
        self.last = time.monotonic()

    def __call__(self, written: str) -> None:
        if time.monotonic() - self.last >= self.interval and written.strip():
            self.last = time.monotonic()
            self.client.chat_update(channel=self.channel, ts=self.ts, text=written + " …")

    def finish(self, written: str) -> None:
        self.client.chat_update(channel=self.channel, ts=self.ts, text=written)


def compare_delivery(chars: int, chars_per_s: float) -> dict:
    """One answer of `chars` characters written at `chars_per_s`, shown both ways; calls and
    characters sent to Slack for each (the answer text is the same)."""
    import threading

    from slack_sdk import WebClient

    from bot.slack.answers import AnswerView, answer_tail
    from bot.slack.streaming import AnswerStream

    words = "Holidays are requested in the HR portal under Absences, and approved by your manager. " * 50
    answer = words[:chars]
    piece, results = 4, {}

    def write(show, name):
        with FakeSlack() as fake:
            client = WebClient(token="xoxb-bench", base_url=fake.api_url)
            target = show(client)
            for end in range(piece, len(answer) + piece, piece):
                target(answer[:end])
                time.sleep(piece / chars_per_s)
            if isinstance(target, UpdateLoop):
                target.finish(answer)
            else:
                view = AnswerView(
                    text=answer,
                    interaction_id=1,
                    mode="rag",
                    sources=[{"title": "Handbook", "source": "handbook.md", "score": 0.8}],
                )
                assert target.finish(view, answer_tail(view))
            calls = [c for c in fake.calls() if c["_method"] in ANSWER_METHODS]
            sent = sum(
                len(c.get("text") or c.get("markdown_text") or "")
                + sum(len(k.get("text") or "") for k in c.get("chunks") or [])
                for c in calls
            )
            results[name] = {
                "calls": len(calls),
                "methods": dict(Counter(c["_method"] for c in calls)),
                "chars_sent": sent,
            }

    threads = [
        threading.Thread(
            target=write,
            args=(lambda c: AnswerStream(c, channel="C1", thread_ts="1.0", user="U1", team="T1"), "stream"),
        ),
        threading.Thread(target=write, args=(lambda c: UpdateLoop(c, "C1", "1.0"), "update loop")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def summary(name: str, result: dict) -> str:
    lat = result["latencies"]
    return (
        f"| {name} | {len(lat)} | {percentile(lat, 50):.1f} | {percentile(lat, 95):.1f} | "
        f"{percentile(lat, 99):.1f} | {max(lat):.1f} | {len(lat) / result['elapsed']:.0f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--retries", type=int, default=100, help="events sent a second time with X-Slack-Retry-Num"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=100,
        help="events sent first, unmeasured; the measured load starts once answers are flowing",
    )
    parser.add_argument("--model", help="base model folder (default: a tiny model made for the run)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--answer-timeout", type=float, default=900)
    parser.add_argument(
        "--answer-chars", type=int, default=1200, help="length of the answer compared for calls"
    )
    parser.add_argument("--chars-per-s", type=float, default=80.0, help="how fast that answer is written")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server()
        return 0

    load_before = os.getloadavg()[0]
    items = workload(args.events, args.retries)
    warmup = workload(args.warmup, 0, start=args.events)
    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as fake:
        model = args.model
        if model is None:
            from finetune.tiny import make_tiny

            model = str(make_tiny(Path(tmp) / "tiny"))
        home = Path(tmp) / "home"
        home.mkdir()
        bare = run_bare(fake, items, args.concurrency, warmup)
        apprenti = run_apprenti(
            fake,
            items,
            warmup,
            args.concurrency,
            args.events,
            model,
            home,
            args.max_new_tokens,
            args.answer_timeout,
        )
    delivery = compare_delivery(args.answer_chars, args.chars_per_s)

    p99 = percentile(apprenti["latencies"], 99)
    ok = (
        p99 <= 100
        and apprenti["lost"] == 0
        and apprenti["duplicates"] == 0
        and set(apprenti["statuses"]) == {200}
    )
    bare_p99 = percentile(bare["latencies"], 99)
    table = [
        "| server | requests | ack p50 ms | ack p95 ms | ack p99 ms | max ms | requests/s |",
        "|---|---|---|---|---|---|---|",
        summary("bare Bolt app: one listener that only acks, Bolt's Starlette adapter (baseline)", bare),
        summary("`apprenti serve --http`, the tiny model answering", apprenti),
    ]
    total = args.events + args.warmup
    delivered = (
        f"{total - apprenti['lost']}/{total} answers delivered (warm-up included): **{apprenti['lost']} "
        f"lost, {apprenti['duplicates']} duplicates**; when the measured load began, "
        f"{apprenti['backlog']} answers were queued or being generated, {apprenti['during']} more went "
        f"out during it ({apprenti['elapsed']:.1f} s), the last {apprenti['answered']:.1f} s after it began"
    )
    verdict = "meets it" if ok else "MISSES it"
    per_call = ", ".join(
        f"{m} {k / max(1, total - apprenti['lost']):.2f}" for m, k in sorted(apprenti["methods"].items())
    )
    calls_table = [
        "| delivery | Web API calls | calls by method | characters sent |",
        "|---|---|---|---|",
        *(
            f"| {name} | {r['calls']} | {', '.join(f'{m} {k}' for m, k in sorted(r['methods'].items()))} | "
            f"{r['chars_sent']} |"
            for name, r in (
                ("old chat.update loop (baseline)", delivery["update loop"]),
                ("Slack streaming (`chat.startStream/appendStream/stopStream`)", delivery["stream"]),
            )
        ),
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "bare_p99_ms": bare_p99,
                    "apprenti_p99_ms": p99,
                    "lost": apprenti["lost"],
                    "duplicates": apprenti["duplicates"],
                    "answered_s": apprenti["answered"],
                    "ok": ok,
                    "calls_per_answer": apprenti["calls_per_answer"],
                    "delivery": delivery,
                }
            )
        )
    else:
        print(
            "\n".join(
                [
                    *table,
                    "",
                    delivered,
                    f"target ack p99 <= 100 ms, 0 lost, 0 duplicates: {verdict}",
                    f"Web API calls per answer in the run: {apprenti['calls_per_answer']:.2f} ({per_call})",
                    *calls_table,
                    f"load average before the run: {load_before:.2f}",
                ]
            )
        )
    if not args.no_write:
        write_section(
            "slack-ack",
            "\n".join(
                [
                    "## Slack ack latency under load (HTTP mode)",
                    "",
                    f"{args.events} signed `app_mention` events built from Slack's real request body, plus "
                    f"{len(items) - args.events} Slack-style retries (same `event_id`, `X-Slack-Retry-Num: "
                    f"1`), sent over loopback by {args.concurrency} concurrent clients to `POST "
                    f"/slack/events` after {args.warmup} unmeasured warm-up events (the measured load "
                    "starts once the first answer is out), while the tiny random Llama generates every "
                    f"answer ({args.max_new_tokens} new tokens, 2 answer threads), each streamed into its "
                    "thread with Slack's streaming API; the Slack Web API is the local stand-in "
                    "(`bot/slack/standin.py`, which answers the streaming methods as Slack does). The bare "
                    "Bolt app gets the same requests in the same run. Measured by `python -m "
                    "bench.slack_ack`.",
                    "",
                    *table,
                    "",
                    delivered + ".",
                    "",
                    f"Ack p99 **{p99:.1f} ms** vs the bare Bolt app's {bare_p99:.1f} ms (target ≤ 100 ms, 0 "
                    f"lost, 0 duplicates: {verdict}). The baseline does no work at all, but Bolt's own "
                    "adapter runs `dispatch` on the event loop and waits for the listener's `ack()` in 10 "
                    "ms polls, one request at a time. Apprenti acknowledges an event as soon as its "
                    "signature checks out and hands it to Bolt on a background thread (retries are then "
                    "dropped by event id, answers made by the model in low-priority threads), so acks stay "
                    f"fast while ~100 answers wait for the model. Machine: {platform.machine()}, "
                    f"{os.cpu_count()} CPU cores, Python {platform.python_version()}; the load generator "
                    "and the fake Slack share those cores; 1-minute load average before the run "
                    f"{load_before:.2f}. On a machine shared with other work the tail grows with the load "
                    "average: compare the two rows of one run, not runs with each other.",
                    "",
                    "### Web API calls per answer",
                    "",
                    f"In the run above each answer cost **{apprenti['calls_per_answer']:.2f}** Web API "
                    f"calls ({per_call}): the thinking status, then the stream opened and stopped with the "
                    f"tail (a 16-token answer needs no append). A longer answer, {args.answer_chars} "
                    f"characters written at {args.chars_per_s:.0f} characters/s (a small local model's "
                    "pace), shown both ways against the same stand-in in the same run:",
                    "",
                    *calls_table,
                    "",
                    "The update loop re-sends the whole answer on every `chat.update` (rate-limited per "
                    "message), so what it sends grows with the square of the answer's length; the stream "
                    "sends each character once, in appends of 256 characters or two seconds' worth, "
                    "whichever comes first, and the tail rides on the final `chat.stopStream`.",
                ]
            ),
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
