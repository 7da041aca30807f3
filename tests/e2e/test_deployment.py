"""The container build and the Compose topology: compose.yaml validated against the Compose
Specification's schema (and by `docker compose config` where it is installed), and the promises
docs/operations.md makes about it checked on its structure."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests" / "data" / "compose" / "compose-spec.json"
APPRENTI_HOME = "/data/apprenti"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_file_follows_the_compose_specification(compose):
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = sorted(Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def docker_compose() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return [shutil.which("docker-compose")] if shutil.which("docker-compose") else None


def test_docker_compose_config_accepts_it(tmp_path):
    command = docker_compose()
    if command is None:
        pytest.skip("docker compose is not installed here; the schema check above stands in for it")
    result = subprocess.run(
        [*command, "-f", str(REPO / "compose.yaml"), "--profile", "gpu", "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"APPRENTI_ENV_FILE": ".env.example", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr


def test_the_topology(compose):
    services = compose["services"]
    bots = [name for name, s in services.items() if s.get("command", [None])[0] == "serve"]
    workers = [name for name, s in services.items() if s.get("command") == ["worker"]]
    assert len(bots) == 2 and "worker" in workers
    assert set(services) >= {"postgres", "chroma", "vllm"}
    assert services["vllm"]["profiles"] == ["gpu"] and services["worker-gpu"]["profiles"] == ["gpu"]
    assert not any("profiles" in services[name] for name in [*bots, "worker", "postgres", "chroma"])
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"


def test_the_apprenti_processes_share_the_database_the_index_and_the_adapter_folder(compose):
    services = compose["services"]
    apprenti = [n for n, s in services.items() if s.get("image", "").startswith("apprenti") and n != "chroma"]
    assert len(apprenti) == 4  # two bots, the worker, the GPU worker
    for name in apprenti:
        service = services[name]
        env = service["environment"]
        assert (
            env["APPRENTI_DATABASE_URL"].startswith("postgresql://")
            and "@postgres:" in env["APPRENTI_DATABASE_URL"]
        )
        assert env["APPRENTI_CHROMA_URL"] == "http://chroma:8000" and env["APPRENTI_HOME"] == APPRENTI_HOME
        assert f"apprenti-data:{APPRENTI_HOME}" in service["volumes"], name
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    # vLLM reads the adapters at the very path the registry records.
    assert f"apprenti-data:{APPRENTI_HOME}:ro" in services["vllm"]["volumes"]
    assert "--enable-lora" in services["vllm"]["command"]
    assert services["vllm"]["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert services["worker-gpu"]["build"]["args"]["TORCH_VARIANT"].startswith("cu")


def test_the_bots_serve_slack_over_http_and_leave_scheduling_to_the_worker(compose):
    for name in ("bot-1", "bot-2"):
        command = compose["services"][name]["command"]
        assert command[:2] == ["serve", "--http"] and "--no-scheduler" in command
        assert "/healthz" in " ".join(compose["services"][name]["healthcheck"]["test"])
    assert "/metrics" in " ".join(compose["services"]["worker"]["healthcheck"]["test"])
    assert compose["services"]["worker"]["environment"]["APPRENTI_METRICS_PORT"] == "9464"


def test_the_dockerfile_builds_from_the_repository(compose):
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    for path in [line.split()[1] for line in text.splitlines() if line.startswith("COPY ")]:
        assert (REPO / path).exists(), f"Dockerfile copies {path}, which the repository lacks"
    assert "ARG TORCH_VARIANT=cpu" in text and "-c constraints.txt" in text
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in text
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and ".git" in ignored
