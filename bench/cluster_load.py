"""The loopback cluster under load and faults: `apprenti cluster`'s topology (PostgreSQL, chroma run,
two `apprenti serve --http` replicas, a worker), the tiny model answering, Slack's Web API stood in for.

1. One process alone: N signed app_mention events to replica 1, each retried once on replica 1 (the
   single-process figure; same database, index and model as the replicas).
2. Both replicas: N more events spread over the two, each retried once on the other replica.
3. A replica killed: K questions acknowledged by replica 1, which is then SIGKILLed (Slack retries
   none of them); the time until replica 2 has answered them all (claims last APPRENTI_EVENT_LEASE,
   the default 30 s).

Counts lost and duplicate answers (replies per thread in the stand-in) and reports ack latency per
replica. Writes its section of docs/benchmarks.md (bench:cluster).

    python -m bench.cluster_load [--events 1000 --kill 50 --concurrency 50] [--no-docs]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._docs import machine_line, publish  # noqa: E402
from bot.cli.cluster import SECRET, Cluster  # noqa: E402
from bot.slack.standin import SlackStandIn  # noqa: E402
from tests.cluster.traffic import Sender, mention, percentile, reply_counts, wait_answered  # noqa: E402

TOKENS = 16


def questions(n: int, tag: str, start: int) -> list[dict]:
    return [
        mention(f"Ev{tag}{i:06d}", f"17{start + i:08d}.000100", f"How do I request holidays? ({tag} {i})")
        for i in range(n)
    ]


def threads(bodies: list[dict]) -> list[str]:
    return [b["event"]["ts"] for b in bodies]


def ack_buckets(url: str) -> dict[float, float]:
    """The replica's own ack histogram for events (apprenti_ack_seconds): upper bound -> count."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        if family.name == "apprenti_ack_seconds":
            return {
                float(s.labels["le"]): s.value
                for s in family.samples
                if s.name.endswith("_bucket") and s.labels.get("kind") == "event"
            }
    return {}


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the histogram bucket holding the q-th percentile of what was observed in between."""
    counts = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = counts.get(float("inf"), 0.0)
    for le, count in counts.items():
        if total and count >= q / 100 * total:
            return le
    return float("nan")


def ack_row(name: str, seconds: list[float], server: tuple[dict, dict]) -> str:
    ms = [s * 1000 for s in seconds]
    inside = bucket_quantile(*server, 99) * 1000
    return (
        f"| {name} | {len(ms)} | {percentile(ms, 50):.1f} | {percentile(ms, 95):.1f} "
        f"| {percentile(ms, 99):.1f} | {max(ms):.1f} | ≤ {inside:.0f} |"
    )


def outcome(standin, bodies: list[dict], timeout: float) -> dict:
    """Wait for every answer (up to `timeout`), then count lost and duplicated ones."""
    started = time.monotonic()
    try:
        wait_answered(standin, threads(bodies), timeout)
    except AssertionError:
        pass
    drained = time.monotonic() - started
    time.sleep(3)  # room for a second answer, were one coming
    counts = reply_counts(standin, threads(bodies))
    return {
        "answered": sum(1 for n in counts.values() if n),
        "lost": sum(1 for n in counts.values() if n == 0),
        "duplicates": sum(n - 1 for n in counts.values() if n > 1),
        "drain_s": drained,
    }


def phase(sender: Sender, standin, bodies: list[dict], *, spread: bool, concurrency: int) -> dict:
    sender.sent.clear()
    before = [ack_buckets(url) for url in sender.urls]
    started = time.monotonic()
    if spread:
        sender.spread(bodies, retry_elsewhere=True, concurrency=concurrency)
    else:  # one replica gets each event and its retry
        alone = Sender(sender.urls[:1], sender.secret)
        alone.spread(bodies, retry_elsewhere=True, concurrency=concurrency)
        sender.sent.extend(alone.sent)
    sent_s = time.monotonic() - started
    server = [(b, ack_buckets(url)) for b, url in zip(before, sender.urls, strict=True)]
    result = outcome(standin, bodies, timeout=900)
    result.update(
        sent_s=sent_s,
        refused=sum(1 for s in sender.sent if s.status != 200),
        server=server,
        acks={r: [s.seconds for s in sender.sent if s.replica == r] for r in range(len(sender.urls))},
    )
    return result


def kill_phase(cluster: Cluster, sender: Sender, standin, bodies: list[dict], concurrency: int) -> dict:
    alone = Sender(sender.urls[:1], sender.secret)
    alone.spread(bodies, retry_elsewhere=False, concurrency=concurrency)
    cluster.processes["bot-1"].signal(signal.SIGKILL)
    killed = time.monotonic()
    before = sum(1 for n in reply_counts(standin, threads(bodies)).values() if n)
    result = outcome(standin, bodies, timeout=300)
    result.update(
        answered_before_kill=before,
        after_kill_s=time.monotonic() - killed - 3,
        refused=sum(1 for s in alone.sent if s.status != 200),
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--kill", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    from finetune.tiny import make_tiny

    load_before = os.getloadavg()[0]
    home = Path(tempfile.mkdtemp(prefix="apprenti-cluster-bench-"))
    model = make_tiny(home / "tiny")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPRENTI_", "SLACK_"))}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False",
            "TOKENIZERS_PARALLELISM": "false",
            "APPRENTI_MAX_NEW_TOKENS": str(TOKENS),
            "APPRENTI_TORCH_THREADS": "1",
        }
    )
    with (
        SlackStandIn() as standin,
        Cluster(home / "cluster", str(model), standin.api_url, SECRET, env=env) as cluster,
    ):
        sender = Sender(cluster.replica_urls, SECRET)
        warm = questions(20, "Warm", 0)
        sender.spread(warm, retry_elsewhere=False, concurrency=10)
        outcome(standin, warm, timeout=120)
        single = phase(
            sender,
            standin,
            questions(args.events, "One", 100_000),
            spread=False,
            concurrency=args.concurrency,
        )
        both = phase(
            sender, standin, questions(args.events, "Two", 200_000), spread=True, concurrency=args.concurrency
        )
        killed = kill_phase(cluster, sender, standin, questions(args.kill, "Kill", 300_000), args.concurrency)
        load_end = os.getloadavg()[0]
    n = args.events
    ok = (
        single["lost"] == both["lost"] == killed["lost"] == 0
        and single["duplicates"] == both["duplicates"] == killed["duplicates"] == 0
        and killed["after_kill_s"] <= 60
    )
    total = {"single": single["sent_s"] + single["drain_s"], "both": both["sent_s"] + both["drain_s"]}
    p99 = {
        "single": bucket_quantile(*single["server"][0], 99) * 1000,
        "r1": bucket_quantile(*both["server"][0], 99) * 1000,
        "r2": bucket_quantile(*both["server"][1], 99) * 1000,
    }

    def phase_row(name: str, count: int, result: dict, after: str) -> str:
        return (
            f"| {name} | {count} | {result['answered']} | {result['lost']} | {result['duplicates']} "
            f"| {result['refused']} | {after} |"
        )

    rows = "\n".join(
        [
            phase_row("1. one process", n, single, f"{total['single']:.1f} s"),
            phase_row("2. two replicas", n, both, f"{total['both']:.1f} s"),
            phase_row(
                "3. replica 1 killed", args.kill, killed, f"{killed['after_kill_s']:.1f} s after the kill"
            ),
        ]
    )
    acks = "\n".join(
        [
            ack_row("1. one process alone (replica 1)", single["acks"][0], single["server"][0]),
            ack_row("2. replica 1 of two", both["acks"][0], both["server"][0]),
            ack_row("2. replica 2 of two", both["acks"][1], both["server"][1]),
        ]
    )
    verdict = "met" if ok else "**missed**"
    section = f"""## The loopback cluster: events over two replicas, and a replica killed (issue 15)

`apprenti cluster`'s topology on one machine (`bench/cluster_load.py`): PostgreSQL (Debian's package),
`chroma run`, two `apprenti serve --http --no-scheduler` replicas and one `apprenti worker`, sharing one
`APPRENTI_HOME`; the tiny random Llama answers ({TOKENS} new tokens, 2 answer threads per replica), every
answer streamed to the Slack Web API stand-in; {args.concurrency} clients send signed `app_mention` events
over loopback. Every event is written to the `slack_event` queue (PostgreSQL) before it is acknowledged.
After 20 unmeasured warm-up questions:

1. **one process**: {n} events to replica 1, each retried once (same `event_id`, `X-Slack-Retry-Num: 1`)
   on replica 1;
2. **two replicas**: {n} other events spread over both, each retried once on the *other* replica;
3. **a replica killed**: {args.kill} questions acknowledged by replica 1, then `SIGKILL` (Slack retries
   none of them; claims last the default `APPRENTI_EVENT_LEASE=30`).

| requests to | requests | ack p50 ms | ack p95 ms | ack p99 ms | max ms | server-side p99 ms |
|---|---|---|---|---|---|---|
{acks}

Ack latencies are measured by the sender, from the request to the response; the last column is the
replica's own `apprenti_ack_seconds` histogram (from the handler's start to its response, the bucket bound
at the 99th percentile), which leaves out the time a request waits for the replica's event loop to accept
and read it.

| phase | questions | answered | lost | duplicate answers | requests refused | all answered after |
|---|---|---|---|---|---|---|
{rows}

Reading it: two replicas answered the same load in {total["both"]:.1f} s against {total["single"]:.1f} s
for one process, and each replica's own handler p99 (≤ {p99["r1"]:.0f} / ≤ {p99["r2"]:.0f} ms) was below
the lone process's (≤ {p99["single"]:.0f} ms). The sender's figures are far above the handlers' because
{args.concurrency} senders fire {2 * n} requests as fast as they can while the same cores generate {n}
answers: a request waits for a CPU, for the replica's event loop to accept and read it and for the
sender's own loop, before and after the handler runs. On a machine this busy the tail reaches Slack's 3 s
limit; Slack then retries, and the retry is dropped by the queue, so nothing is answered twice — but give
the replicas cores of their own in production.

In phase 3 replica 1 had answered {killed["answered_before_kill"]} of the {args.kill} before it died;
replica 2's poller claimed the rest once their claims expired and answered each once, the last
{killed["after_kill_s"]:.1f} s after the kill (target: within a minute). Targets: 0 lost, 0 duplicates in
every phase — {verdict}. The ack includes the queue's `INSERT` into PostgreSQL (a retry's is the one
refused by the primary key); compare rows of one run, not runs with each other: the load generator, the
stand-in, PostgreSQL, Chroma and both replicas share the same cores. 1-minute load average before the run
{load_before:.2f}. {machine_line()} (At the end: {load_end:.2f}.)
"""
    publish("cluster", section, write=not args.no_docs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
