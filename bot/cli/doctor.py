"""`apprenti doctor`: check the set-up and say what is missing and how to fix it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import typer
from rich.table import Table

from bot.cli.common import console, print_json


@dataclass
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str = ""


def _checks() -> list[Check]:
    from bot.runtime import Runtime
    from bot.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        return [Check("settings", "fail", str(exc), "Fix the variables named above (see .env.example).")]
    checks = [Check("settings", "ok", "all variables valid")]
    rt = Runtime(settings)

    def attempt(name: str, fn, fix: str) -> None:
        try:
            checks.append(Check(name, "ok", fn()))
        except Exception as exc:  # noqa: BLE001 - the doctor reports every failure
            checks.append(Check(name, "fail", str(exc), fix))

    attempt("home", lambda: str(rt.home), "Set APPRENTI_HOME to a writable folder.")
    attempt(
        "database",
        lambda: f"{rt.engine.url.render_as_string(hide_password=True)} (schema up to date)",
        "Check APPRENTI_DATABASE_URL and that the database server is running.",
    )
    attempt(
        "plugins",
        lambda: ", ".join(sorted(n for n, _ in rt.plugins.list_name_plugin())),
        "Check APPRENTI_PLUGINS.",
    )
    checks.append(_pii_check(rt))
    attempt(
        "profiles",
        lambda: f"{len(rt.profiles.channels)} channel profile(s) from {settings.config or 'defaults'}",
        "Fix the file named by APPRENTI_CONFIG.",
    )

    def model() -> str:
        from finetune import bundled
        from finetune.loading import resolve_model

        folder = resolve_model(settings.base_model)
        if bundled.is_bundled(settings.base_model):
            info = bundled.describe(settings.base_model)
            return (
                f"{info['name']} (bundled, {info['parameters']} parameters, {info['licence']}): converted "
                f"from {info['source']} (package {info['distribution']}) into {folder}"
            )
        origin = (
            "local folder" if folder == str(Path(settings.base_model).expanduser()) else "Hugging Face cache"
        )
        return f"{settings.base_model} ({origin}) -> {folder}"

    attempt(
        "model", model, "Set APPRENTI_BASE_MODEL to a model folder, or run `apprenti model make-tiny DIR`."
    )

    def chroma() -> str:
        if settings.chroma_url:
            import httpx

            httpx.get(settings.chroma_url.rstrip("/") + "/api/v2/heartbeat", timeout=3).raise_for_status()
            return f"server {settings.chroma_url} is up"
        settings.chroma_path.mkdir(parents=True, exist_ok=True)
        return f"embedded at {settings.chroma_path}"

    attempt("chroma", chroma, "Start the Chroma server (`chroma run`) or unset APPRENTI_CHROMA_URL.")

    tokens = [
        ("SLACK_BOT_TOKEN", settings.slack_bot_token, "xoxb-"),
        ("SLACK_APP_TOKEN", settings.slack_app_token, "xapp-"),
    ]
    for name, value, prefix in tokens:
        if not value:
            checks.append(
                Check(name, "warn", "not set", f"Needed for Slack: see docs/slack-setup.md ({prefix}...).")
            )
        elif not value.startswith(prefix):
            checks.append(
                Check(
                    name,
                    "fail",
                    f"does not start with {prefix}",
                    f"Copy the {prefix}... token from the Slack app settings.",
                )
            )
        else:
            checks.append(Check(name, "ok", "set"))
    if settings.slack_app_token:
        checks.append(Check("slack mode", "ok", "Socket Mode (SLACK_APP_TOKEN is set)"))
    elif settings.slack_signing_secret:
        checks.append(
            Check("slack mode", "ok", "HTTP mode (signing secret set): run `apprenti serve --http --port P`")
        )
    else:
        checks.append(
            Check(
                "slack mode",
                "warn",
                "neither SLACK_APP_TOKEN nor SLACK_SIGNING_SECRET is set",
                "Set SLACK_APP_TOKEN for Socket Mode, or SLACK_SIGNING_SECRET for HTTP mode.",
            )
        )
    return checks


def _pii_check(rt) -> Check:
    """Which plugin masks personal data, or that masking is off on purpose."""
    try:
        maskers = [impl.plugin_name for impl in rt.plugins.hook.find_pii.get_hookimpls()]
    except Exception as exc:  # noqa: BLE001 - the doctor reports every failure
        return Check("pii", "fail", str(exc), "Load a PII plugin (APPRENTI_PLUGINS) or set APPRENTI_PII=off.")
    if maskers:
        return Check("pii", "ok", f"personal data masked by: {', '.join(sorted(maskers))}")
    return Check(
        "pii",
        "warn",
        "PII masking is off on purpose (APPRENTI_PII=off): texts are stored unmasked",
        "Load a PII plugin (APPRENTI_PLUGINS, e.g. pii) and unset APPRENTI_PII.",
    )


def doctor(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")):
    """Check settings, home, database, plugins, profiles, model, Chroma and Slack tokens."""
    checks = _checks()
    if as_json:
        print_json({"ok": all(c.status != "fail" for c in checks), "checks": [asdict(c) for c in checks]})
    else:
        table = Table("check", "status", "detail", "how to fix")
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}
        for c in checks:
            table.add_row(c.name, f"[{colour[c.status]}]{c.status}[/]", c.detail, c.fix)
        console.print(table)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
