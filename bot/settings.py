"""Typed settings: the only place that reads the environment and `.env`.

Every field is an environment variable prefixed `APPRENTI_` (Slack's own variables keep their
names). Constructor arguments win over the environment, which wins over the defaults here.
`.env.example` lists every variable; a test keeps the two in step.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


class SettingsError(Exception):
    """A setting has a value the program cannot use; the message names the variable."""


def default_home() -> Path:
    """Where Apprenti keeps its data when APPRENTI_HOME is not set."""
    return Path.home() / ".apprenti"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="APPRENTI_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        env_ignore_empty=True,
    )

    # --- where things live -------------------------------------------------------------------
    home: Path = Field(
        default_factory=default_home,
        description="Data folder: database, Chroma index, adapters, logs. Created if missing.",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL. Default: SQLite file apprenti.db in the home (WAL mode)."
    )
    chroma_path: Path | None = Field(
        None, description="Folder of the embedded Chroma index. Default: chroma/ in the home."
    )
    chroma_url: str | None = Field(
        None, description="URL of a Chroma server (http://host:port). When set, replaces the embedded index."
    )
    config: Path | None = Field(
        None, description="Channel profiles (YAML). Default: apprenti.yaml in the working folder, if present."
    )

    # --- models --------------------------------------------------------------------------------
    base_model: str = Field(
        "smollm2-135m-instruct",
        description=(
            "Base model: smollm2-135m-instruct (bundled, converted once on first use), a local model folder "
            "or a Hugging Face hub id."
        ),
    )
    load_in_4bit: bool = Field(False, description="Load the serving model in 4-bit NF4 (bitsandbytes).")
    llm_backend: Literal["local", "openai"] = Field(
        "local",
        description=(
            "local (transformers + peft in process) or openai (an OpenAI-compatible server such as vLLM)."
        ),
    )
    openai_base_url: str | None = Field(
        None, description="Base URL of the OpenAI-compatible endpoint, e.g. http://gpu-box:8000/v1."
    )
    openai_api_key: str = Field("not-needed", description="API key sent to the OpenAI-compatible endpoint.")
    openai_model: str | None = Field(
        None, description="Served model name when no adapter is active. Default: the base model."
    )
    llm_timeout: float = Field(
        60.0,
        gt=0,
        description=(
            "Seconds the model may take for an answer. The openai backend then answers with an error; the "
            "local backend stops generating and sends the answer so far with a notice."
        ),
    )
    max_new_tokens: int = Field(256, ge=1, le=8192, description="Longest answer, in tokens.")
    temperature: float = Field(
        0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 means greedy decoding."
    )
    max_prompt_tokens: int = Field(
        3072, ge=64, description="Longest prompt; a longer question is truncated with a visible notice."
    )
    decode_weights: Literal["bfloat16", "float32"] = Field(
        "bfloat16",
        description=(
            "How the local backend's served copy of the weights (the active adapter merged in) stores its "
            "projections for decoding one answer: bfloat16 reads half the bytes per token (2.4x peft's "
            "generate on 2 cores, docs/benchmarks.md) and words an answer differently more often than "
            "float32 (10 and 14 of 16 answers identical to peft's there)."
        ),
    )
    torch_threads: int = Field(
        0,
        ge=0,
        description=(
            "CPU threads for torch (0: torch's default). 1 is fastest for tiny models on a busy machine."
        ),
    )
    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description=(
            "sentence-transformers model (name or folder) for the index. all-MiniLM-L6-v2 ships offline; "
            "multilingual-e5-small suits French-speaking teams better."
        ),
    )
    embedding_backend: Literal["onnx-int8", "onnx", "torch"] = Field(
        "onnx-int8",
        description=(
            "How the embedding model runs on CPU: onnx-int8 (ONNX Runtime with int8 weights, about 4x "
            "faster per question, 2x faster ingestion), onnx (float32) or torch (plain "
            "sentence-transformers). A model that cannot be exported runs on torch."
        ),
    )

    # --- plugins and answers -------------------------------------------------------------------
    plugins: CommaList | None = Field(
        None, description="Comma-separated plugin names to load (built-in and installed). Default: all."
    )
    trace_plugins: bool = Field(False, description="Log every hook call with its arguments and results.")
    pii: Literal["on", "off"] = Field(
        "on",
        description=(
            "on: refuse to start unless a PII plugin (one implementing find_pii, such as the built-in pii) "
            "is loaded; off: allow running without one, on purpose, storing texts unmasked."
        ),
    )
    rag_k: int = Field(5, ge=1, le=50, description="Passages retrieved per question.")
    prompt_layout: Literal["auto", "plain", "numbered"] = Field(
        "auto",
        description=(
            "How retrieved passages reach the model: numbered (titled sources and an instruction to cite "
            "them), plain (the best passage's relevant sentences as text, for small models) or auto (plain "
            "for models under 1B parameters, such as the bundled one)."
        ),
    )
    plain_passages: int = Field(1, ge=1, le=10, description="plain layout: passages shown to the model.")
    plain_chars: int = Field(
        160,
        ge=40,
        le=4000,
        description=(
            "plain layout: each passage is cut to its sentences most relevant to the question, within this "
            "many characters."
        ),
    )
    rag_threshold: float = Field(
        0.4,
        description=(
            "auto mode: retrieve when the best passage scores at least this, else prompt. With the default "
            "embedding model the demo handbook's questions score 0.44-0.80 and unrelated questions "
            "0.05-0.38."
        ),
    )
    team_answer_threshold: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description=(
            "A team knowledge entry (an approved fact correction) whose cosine similarity to the question "
            "is at least this answers it on its own, ahead of every document passage, in every mode."
        ),
    )
    team_answer_min: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description=(
            "A team knowledge entry scoring at least this, and within 0.15 of the best document passage, "
            "also answers ahead of it (it is about the same thing, and newer). With the default embedding "
            "model, paraphrases of a corrected question score 0.34-0.70 and unrelated questions 0.19 at "
            "most."
        ),
    )
    team_answer_k: int = Field(
        2, ge=0, le=10, description="Team knowledge entries searched per question (0: none)."
    )
    fewshot_k: int = Field(3, ge=0, le=20, description="Approved pairs put in the prompt as examples.")
    fewshot_min_score: float = Field(
        0.3,
        ge=-1.0,
        le=1.0,
        description=(
            "Least cosine similarity between the question and an approved pair's question for the pair to "
            "be shown as an example."
        ),
    )

    # --- Slack ---------------------------------------------------------------------------------
    slack_bot_token: str | None = Field(
        None, validation_alias=AliasChoices("SLACK_BOT_TOKEN"), description="Bot token (xoxb-...)."
    )
    slack_app_token: str | None = Field(
        None,
        validation_alias=AliasChoices("SLACK_APP_TOKEN"),
        description="App-level token (xapp-...); enables Socket Mode.",
    )
    slack_signing_secret: str | None = Field(
        None,
        validation_alias=AliasChoices("SLACK_SIGNING_SECRET"),
        description="Signing secret used to verify HTTP requests from Slack.",
    )
    slack_api_url: str | None = Field(
        None,
        validation_alias=AliasChoices("SLACK_API_URL"),
        description="Base URL of the Slack Web API (tests, proxies). Must end with /api/.",
    )
    review_channel: str | None = Field(
        None, description="Channel id where corrections are posted for review."
    )
    admin_channel: str | None = Field(None, description="Channel id for training reports and admin notices.")
    admins: CommaList = Field(
        default_factory=list, description="Comma-separated Slack user or user-group ids with admin rights."
    )
    reviewers: CommaList = Field(
        default_factory=list,
        description="Comma-separated Slack user or user-group ids who may approve corrections.",
    )
    auditors: CommaList = Field(
        default_factory=list,
        description="Comma-separated Slack user or user-group ids with read-only access.",
    )
    allow_self_review: bool = Field(
        False,
        description=(
            "Let a reviewer approve their own correction (for a team of one or two; off keeps the author "
            "and the approver apart)."
        ),
    )
    document_roots: CommaList = Field(
        default_factory=list,
        description=(
            "Comma-separated folders that /apprenti ingest may index from (resolved: a symlink that leads "
            "outside is refused). Empty: /apprenti ingest is refused. Sources are shown relative to their "
            "root."
        ),
    )

    # --- learning loop -------------------------------------------------------------------------
    train_threshold: int = Field(
        50, ge=1, description="Approved, unused examples of a track that trigger a training run."
    )
    min_examples: int = Field(
        50, ge=1, description="Fewest examples a track needs before training is allowed."
    )
    auto_promote: bool = Field(True, description="Activate a candidate adapter when it passes the gate.")
    scheduler_interval: int = Field(
        300, ge=1, description="Seconds between the scheduler's threshold checks."
    )
    train_min_interval: int = Field(
        3600, ge=0, description="Fewest seconds between two training runs of one track."
    )
    train_daily_cap: int = Field(4, ge=0, description="Most training runs per track per day (0: no cap).")
    quiet_hours: str | None = Field(
        None, description="Hours when the scheduler starts no run, e.g. 08-18 (local time)."
    )
    heartbeat_timeout: int = Field(
        300, ge=10, description="Seconds without a heartbeat after which a training run is marked failed."
    )
    train_epochs: float = Field(3.0, gt=0, description="Training epochs per run.")
    train_learning_rate: float = Field(2e-4, gt=0, description="Learning rate of the LoRA weights.")
    train_step_budget: int = Field(
        48,
        ge=0,
        description=(
            "Most optimizer steps per run once the first epoch is done (0: every epoch): a run always "
            "makes one whole pass over its pairs, then more epochs only as far as this budget goes."
        ),
    )
    train_max_length: int = Field(1024, ge=32, description="Longest training sequence, in tokens.")
    train_replay_ratio: float = Field(
        1.5,
        ge=0,
        le=10,
        description=(
            "General replay pairs mixed into training per team pair (0: none), so the adapter learns the "
            "team's ways where they apply and nothing else."
        ),
    )
    train_cpu_top_layers: int = Field(
        0,
        ge=0,
        description=(
            "On a CPU, adapt only the top N transformer layers (0: all); the backward pass stops there, "
            "which makes a step faster but learns less."
        ),
    )
    gate_margin: float = Field(
        0.0, description="How much the candidate must beat the active adapter on the target metric."
    )
    gate_general_ratio: float = Field(
        0.9,
        ge=0,
        le=2,
        description=(
            "The gate's general-skills floor: the candidate must score at least this share of the base "
            "model's general-skills score (minus 0.01)."
        ),
    )
    gate_max_leak_rate: float = Field(
        1 / 12,
        ge=0,
        le=1,
        description=(
            "Most general answers (beyond the base model's) that may carry the track's template lines "
            "before the gate blocks the adapter."
        ),
    )

    # --- operations ----------------------------------------------------------------------------
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description=(
            "Port of a Prometheus /metrics endpoint for Socket Mode and `apprenti worker` (0: none). Over "
            "HTTP, /metrics is on the serving port."
        ),
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description=(
            "Log lines as text, or json: one JSON object per line, with the Slack event id of the request "
            "being handled."
        ),
    )
    event_lease: float = Field(
        30.0,
        ge=1,
        description=(
            "Seconds a replica's claim on a Slack event lasts without renewal (renewed while it answers): "
            "when a replica dies, another one answers its events after this."
        ),
    )
    event_poll_interval: float = Field(
        2.0,
        gt=0,
        description=(
            "Seconds between a serving process's looks at the event queue: renewing its claims, claiming "
            "expired ones."
        ),
    )
    event_max_attempts: int = Field(
        3,
        ge=1,
        description=(
            "Times a Slack event is handed to a replica before it is marked failed (an event that kills "
            "every replica that takes it)."
        ),
    )

    @field_validator("plugins", "admins", "reviewers", "auditors", "document_roots", mode="before")
    @classmethod
    def _split_commas(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet_hours(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        try:
            start, end = (int(part) for part in value.split("-"))
        except ValueError:
            raise ValueError("expected two hours like 08-18") from None
        if not (0 <= start <= 23 and 0 <= end <= 24):
            raise ValueError("hours must be between 0 and 24")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _check_api_url(cls, value: str | None) -> str | None:
        if value and not value.endswith("/"):
            value += "/"
        return value

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        self.home = self.home.expanduser()
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.home / 'apprenti.db'}"
        if self.chroma_path is None:
            self.chroma_path = self.home / "chroma"
        if self.config is None and Path("apprenti.yaml").is_file():
            self.config = Path("apprenti.yaml")
        return self

    # --- derived places ------------------------------------------------------------------------
    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def ensure_home(self) -> Path:
        """Create the data folders, or fail with a message naming APPRENTI_HOME."""
        try:
            for folder in (self.home, self.adapters_dir, self.logs_dir):
                folder.mkdir(parents=True, exist_ok=True)
            # A probe of its own: processes sharing one home (replicas, a worker) start at the same time,
            # and one's unlink must not remove the file another is about to unlink.
            with tempfile.NamedTemporaryFile(dir=self.home, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise SettingsError(
                f"APPRENTI_HOME={self.home}: the data folder cannot be created or written "
                f"({exc.strerror or exc}). Point APPRENTI_HOME at a writable folder."
            ) from None
        return self.home


def env_name(field: str) -> str:
    """The environment variable that sets a field."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"APPRENTI_{field.upper()}"


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as environment variables, so a child process (a training run) sees the same."""
    env = {}
    for field in Settings.model_fields:
        value = getattr(settings, field)
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[env_name(field)] = str(value)
    return env


def load_settings(**overrides) -> Settings:
    """Read the settings, turning validation errors into one message per variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            name = env_name(field) if field in Settings.model_fields else field
            raw = os.environ.get(name)
            shown = f"={raw!r}" if raw is not None else ""
            lines.append(f"{name}{shown}: {error['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
