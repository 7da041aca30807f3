"""`apprenti cluster` itself: one command starts the topology, Ctrl-C stops all of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.cluster.conftest import base_env

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def read_json_document(process: subprocess.Popen, timeout: float) -> dict:
    """The one JSON document the command prints once everything is up (lines before it are progress)."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"apprenti cluster exited ({process.poll()}): {''.join(lines)[-3000:]}")
        if line.startswith("{") or lines and lines[0].startswith("{"):
            lines.append(line)
            try:
                return json.loads("".join(lines))
            except ValueError:
                continue
    raise AssertionError("apprenti cluster did not report within the timeout")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie no one has reaped yet is gone too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def test_one_command_starts_the_topology_and_ctrl_c_stops_it_all(tmp_path, tiny_model_dir):
    env = {**base_env(), "APPRENTI_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli.main",
            "cluster",
            "--model",
            str(tiny_model_dir),
            "--port",
            "0",
            "--json",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        info = read_json_document(process, timeout=300)
        assert len(info["replicas"]) == 2 and set(info["processes"]) == {"chroma", "bot-1", "bot-2", "worker"}
        for url in info["replicas"]:
            assert httpx.get(f"{url}/healthz", timeout=5).json()["ok"] is True
        assert httpx.get(f"{info['chroma_url']}/api/v2/heartbeat", timeout=5).status_code == 200
        assert info["database_url"].startswith("postgresql://")
        from sqlalchemy import create_engine, inspect

        engine = create_engine(info["database_url"])
        assert "slack_event" in inspect(engine).get_table_names()
        engine.dispose()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 0
        pids = [p["pid"] for p in info["processes"].values()]
        deadline = time.monotonic() + 10
        while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(gone(pid) for pid in pids), [pid for pid in pids if not gone(pid)]
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{info['replicas'][0]}/healthz", timeout=2)
        with pytest.raises(Exception):  # noqa: B017 - the server is down: any connection error
            create_engine(info["database_url"]).connect()
    finally:
        if process.poll() is None:
            process.kill()
