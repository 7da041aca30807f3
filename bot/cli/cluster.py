"""`apprenti cluster`: the scale-out topology of compose.yaml as local processes on loopback, for
trying it out, and for the fault tests and benchmarks (tests/cluster, bench/cluster_*.py).

A real PostgreSQL server (Debian's package, a data folder of its own), `chroma run`, N replicas of
`apprenti serve --http --no-scheduler` and one `apprenti worker`, sharing one APPRENTI_HOME (the
adapter folder). Slack is the local stand-in (bot/slack/standin.py) unless SLACK_API_URL points
elsewhere. One command starts it all; Ctrl-C stops it all.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import typer

from bot.cli.common import bad_input, console, fail, print_json, runtime

LOCAL = "127.0.0.1"
SECRET = "cluster-signing-secret"  # the stand-in's requests are signed with it


class ClusterError(Exception):
    """A part of the cluster cannot start; the message says which and where its log is."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


def log_tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.is_file():
        return ""
    return "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_until(
    check, what: str, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None
):
    """Poll `check()` until it is true; fail naming `what` (and its log's end) on timeout or when `process`
    exits."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise ClusterError(f"{what} exited with {process.returncode} (log: {log}){log_tail(log)}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110 - not up yet
            pass
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} did not start within {timeout:.0f} s (log: {log}){log_tail(log)}")
        time.sleep(0.2)


class LocalPostgres:
    """A PostgreSQL server of its own in `folder` (initdb once), on a loopback port; trust auth for
    the user apprenti. As root, it runs as the postgres user (the server refuses root)."""

    def __init__(self, folder: Path | None = None, port: int | None = None, database: str = "apprenti"):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            raise ClusterError(
                "PostgreSQL is not installed: apt-get install postgresql (make system-deps does it)"
            )
        self.bindir = Path(bins[-1]).parent
        # The server's own user must reach its folder; pytest's and many homes are private to root.
        self.folder = Path(folder or tempfile.mkdtemp(prefix="apprenti-pg-"))
        self.data = self.folder / "data"
        self.port = port or free_port()
        self.database = database
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise ClusterError("running as root without runuser: cannot start PostgreSQL")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]

    @property
    def admin_url(self) -> str:
        return f"postgresql://apprenti@{LOCAL}:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql://apprenti@{LOCAL}:{self.port}/{self.database}"

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.as_postgres, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
            capture_output=True,
            text=True,
        )

    def start(self) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.as_postgres:
            os.chmod(self.folder, 0o777)
        if not (self.data / "PG_VERSION").exists():
            done = subprocess.run(
                [
                    *self.as_postgres,
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "apprenti",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise ClusterError(f"initdb {self.data} failed: {done.stderr.strip()}")
        started = self._pg_ctl(
            "-w",
            "-l",
            str(self.data / "server.log"),
            "-o",
            f"-p {self.port} -k {self.data} -c listen_addresses={LOCAL}",
            "start",
        )
        if started.returncode:
            raise ClusterError(
                f"PostgreSQL did not start: {started.stderr.strip()} (log: {self.data / 'server.log'})"
            )
        self._create_database()
        return self.url

    def _create_database(self) -> None:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            wait_until(lambda: admin.connect().close() or True, "PostgreSQL", 30)
            with admin.connect() as conn:
                if not conn.execute(
                    text("select 1 from pg_database where datname = :n"), {"n": self.database}
                ).first():
                    conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        finally:
            admin.dispose()

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")

    def restart(self, down_for: float = 0.0) -> None:
        """Stop (immediately: connections are cut as in a crash), wait `down_for` s, start again."""
        self.stop("immediate")
        time.sleep(down_for)
        self.start()


@dataclass
class Process:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    health: str | None = None  # URL answering 200 once it is up
    popen: subprocess.Popen | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.args,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def up(self) -> bool:
        import httpx

        return self.health is None or httpx.get(self.health, timeout=2).status_code == 200

    def wait(self, timeout: float) -> None:
        wait_until(self.up, self.name, timeout, self.popen, self.log)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 40.0) -> None:
        if not self.alive():
            return
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait(timeout=10)


@dataclass
class Cluster:
    """The topology on loopback. `env` is the base environment of every Apprenti process (settings
    as APPRENTI_* variables); the cluster adds the database, Chroma and Slack to it."""

    home: Path
    model: str
    slack_api_url: str
    signing_secret: str = SECRET
    replicas: int = 2
    first_port: int = 0  # 0: free ports
    worker: bool = True
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    postgres: LocalPostgres | None = None

    @property
    def replica_urls(self) -> list[str]:
        return [self.processes[f"bot-{i + 1}"].health.rsplit("/", 1)[0] for i in range(self.replicas)]

    @property
    def database_url(self) -> str:
        return self.postgres.url

    @property
    def chroma_url(self) -> str:
        return self.processes["chroma"].health.split("/api/")[0]

    def _apprenti(self, name: str, *args: str, port: int | None = None, health: str | None = None) -> Process:
        env = {
            **self.env,
            "APPRENTI_HOME": str(self.home / "shared"),
            "APPRENTI_DATABASE_URL": self.database_url,
            "APPRENTI_CHROMA_URL": self.chroma_url,
            "APPRENTI_BASE_MODEL": self.model,
            "SLACK_API_URL": self.slack_api_url,
            "SLACK_SIGNING_SECRET": self.signing_secret,
            "SLACK_BOT_TOKEN": self.env.get("SLACK_BOT_TOKEN", "xoxb-cluster"),
        }
        env.pop("SLACK_APP_TOKEN", None)  # replicas serve over HTTP
        return Process(
            name,
            [sys.executable, "-m", "bot.cli.main", *args],
            env,
            self.home / "logs" / f"{name}.log",
            health,
        )

    def start(self, timeout: float = 240.0) -> Cluster:
        """Start everything and wait until each part answers; on failure, stop what started."""
        from storage.db import open_database

        try:
            self.postgres = LocalPostgres(None if os.geteuid() == 0 else self.home / "postgres")
            self.postgres.start()
            open_database(self.database_url).dispose()  # migrate once, before several processes race to
            chroma_port = free_port()
            chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
            if chroma is None:
                raise ClusterError("the chroma command is not installed (pip install chromadb)")
            self.processes["chroma"] = Process(
                "chroma",
                [
                    chroma,
                    "run",
                    "--path",
                    str(self.home / "chroma"),
                    "--host",
                    LOCAL,
                    "--port",
                    str(chroma_port),
                ],
                dict(self.env),
                self.home / "logs" / "chroma.log",
                f"http://{LOCAL}:{chroma_port}/api/v2/heartbeat",
            )
            self.processes["chroma"].start()
            self.processes["chroma"].wait(60)
            for i in range(self.replicas):
                port = self.first_port + i if self.first_port else free_port()
                self.processes[f"bot-{i + 1}"] = self._apprenti(
                    f"bot-{i + 1}",
                    "serve",
                    "--http",
                    "--host",
                    LOCAL,
                    "--port",
                    str(port),
                    "--no-scheduler",
                    health=f"http://{LOCAL}:{port}/healthz",
                )
            if self.worker:
                metrics_port = free_port()
                worker = self._apprenti("worker", "worker", health=f"http://{LOCAL}:{metrics_port}/metrics")
                worker.env["APPRENTI_METRICS_PORT"] = str(metrics_port)
                self.processes["worker"] = worker
            for name, process in self.processes.items():
                if name != "chroma":
                    process.start()
            for process in self.processes.values():
                process.wait(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def restart(self, name: str, timeout: float = 240.0) -> None:
        """Start a stopped (or killed) part again, and wait until it answers."""
        process = self.processes[name]
        process.start()
        process.wait(timeout)

    def describe(self) -> dict:
        return {
            "database_url": self.database_url,
            "chroma_url": self.chroma_url,
            "slack_api_url": self.slack_api_url,
            "replicas": self.replica_urls,
            "home": str(self.home),
            "processes": {
                n: {"pid": p.popen.pid if p.popen else None, "log": str(p.log), "health": p.health}
                for n, p in self.processes.items()
            },
        }


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def cluster(
    ctx: typer.Context,
    folder: Path = typer.Option(
        None,
        "--folder",
        help="Where the cluster keeps its data and logs. Default: cluster/ in APPRENTI_HOME.",
    ),
    replicas: int = typer.Option(2, "--replicas", min=1, max=8, help="Bot replicas (apprenti serve --http)."),
    port: int = typer.Option(
        3001, "--port", help="Port of the first replica; the others follow it (0: any free ports)."
    ),
    model: str = typer.Option(
        "tiny",
        "--model",
        help="tiny (a random test model made once in the folder), or a model for APPRENTI_BASE_MODEL.",
    ),
    no_worker: bool = typer.Option(False, "--no-worker", help="Run no apprenti worker."),
    as_json: bool = typer.Option(
        False, "--json", help="Print where everything runs as one JSON document once up."
    ),
):
    """Run the scale-out topology on this machine: PostgreSQL, a Chroma server, bot replicas and a
    worker, Slack's Web API stood in for unless SLACK_API_URL is set. Ctrl-C stops it all."""
    from bot.settings import settings_env

    if not 0 <= port < 65536 - replicas:
        bad_input(f"--port must leave room for {replicas} replicas below 65536, not {port}")
    rt = runtime(ctx)
    settings = rt.settings
    folder = (folder or settings.home / "cluster").resolve()
    if model == "tiny":
        from finetune.tiny import make_tiny

        tiny = folder / "tiny-model"
        model = str(tiny if (tiny / "config.json").exists() else make_tiny(tiny))
    env = {**os.environ, **settings_env(settings)}
    standin = None
    api_url = settings.slack_api_url
    if api_url is None:
        from bot.slack.standin import SlackStandIn

        standin = SlackStandIn()
        standin.start()
        api_url = standin.api_url
    secret = settings.slack_signing_secret or SECRET
    topology = Cluster(
        folder, model, api_url, secret, replicas=replicas, first_port=port, worker=not no_worker, env=env
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        console.print(
            f"starting PostgreSQL, Chroma, {replicas} replica(s){'' if no_worker else ' and a worker'} "
            f"in {folder} (logs in {folder / 'logs'})"
        )
        topology.start()
        if as_json:
            print_json(topology.describe())
        else:
            info = topology.describe()
            for name, value in info.items():
                if name != "processes":
                    console.print(f"{name}: {value}", highlight=False)
            if standin is not None:
                console.print(
                    f"Slack stand-in: sign requests with SLACK_SIGNING_SECRET={secret}", highlight=False
                )
            console.print("up; Ctrl-C stops everything")
        while all(p.alive() for p in topology.processes.values()):
            time.sleep(1)
        dead = [n for n, p in topology.processes.items() if not p.alive()]
        fail(f"{', '.join(dead)} stopped (see {folder / 'logs'}); stopping the rest")
    except ClusterError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        topology.stop()
        if standin is not None:
            standin.stop()


def register(app: typer.Typer) -> None:
    app.command("cluster")(cluster)
