"""One loopback cluster (bot/cli/cluster.py) for the fault tests: PostgreSQL, `chroma run`, two
`apprenti serve --http` replicas and a worker, answering with the tiny model; Slack's Web API is the
stand-in, in this process, so the tests read what each replica sent it.

These tests take minutes: they carry the `cluster` marker and run as their own CI step
(`pytest -m cluster`), not in the default run."""

from __future__ import annotations

import os

import pytest

from bot.cli.cluster import SECRET, Cluster
from bot.slack.standin import SlackStandIn
from tests.cluster.traffic import Sender

REVIEWERS = ("UREVIEW1", "UREVIEW2")
# Short claims, so that a killed replica's questions are answered within seconds rather than 30 s.
LEASE = 10
TRAIN_AT = 6  # approved training pairs that make a track due


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPRENTI_", "SLACK_"))}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False",
            "TOKENIZERS_PARALLELISM": "false",
            "APPRENTI_MAX_NEW_TOKENS": "8",
            "APPRENTI_TORCH_THREADS": "1",
            "APPRENTI_EVENT_LEASE": str(LEASE),
            "APPRENTI_EVENT_POLL_INTERVAL": "1",
            "APPRENTI_REVIEW_CHANNEL": "CREVIEW",
            "APPRENTI_REVIEWERS": ",".join(REVIEWERS),
            "APPRENTI_ADMIN_CHANNEL": "CADMIN",
            # training starts as soon as a few approved pairs exist (the worker test), and a dead
            # run is noticed within seconds
            "APPRENTI_MIN_EXAMPLES": str(TRAIN_AT),
            "APPRENTI_TRAIN_THRESHOLD": str(TRAIN_AT),
            "APPRENTI_SCHEDULER_INTERVAL": "2",
            "APPRENTI_TRAIN_MIN_INTERVAL": "0",
            "APPRENTI_TRAIN_DAILY_CAP": "0",
            "APPRENTI_HEARTBEAT_TIMEOUT": "10",
            "APPRENTI_TRAIN_MAX_LENGTH": "256",
        }
    )
    return env


@pytest.fixture(scope="session")
def standin():
    with SlackStandIn() as fake:
        yield fake


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, tiny_model_dir, standin):
    topology = Cluster(
        tmp_path_factory.mktemp("cluster"), str(tiny_model_dir), standin.api_url, SECRET, env=base_env()
    )
    with topology:
        yield topology


@pytest.fixture
def sender(cluster):
    return Sender(cluster.replica_urls, SECRET)


@pytest.fixture(scope="session")
def db(cluster):
    from storage.db import make_engine

    engine = make_engine(cluster.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def second_worker(cluster):
    """A second `apprenti worker` on the cluster's PostgreSQL and home: its scheduler races the first
    one's for the threshold check and the training runs. Stopped after the test."""
    from bot.cli.cluster import LOCAL, free_port

    metrics_port = free_port()
    worker = cluster._apprenti("worker-2", "worker", health=f"http://{LOCAL}:{metrics_port}/metrics")
    worker.env["APPRENTI_METRICS_PORT"] = str(metrics_port)
    cluster.processes["worker-2"] = worker
    worker.start()
    try:
        worker.wait(240)
        yield worker
    finally:
        worker.stop()
        cluster.processes.pop("worker-2", None)
