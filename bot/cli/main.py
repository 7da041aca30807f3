"""The `apprenti` command. Each area adds its commands from its own module (see COMMAND_MODULES)."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from bot.cli.common import EXIT_BAD_INPUT, err_console

# Modules that define `register(app: typer.Typer)`. Add a line here for a new area.
COMMAND_MODULES = [
    "bot.cli.ask",
    "bot.cli.model",
    "bot.cli.doctor",
    "bot.cli.demo",
    "bot.cli.admin",
    "bot.cli.worker",
    "bot.cli.serve",
    "bot.cli.examples",
    "bot.cli.adapters",
    "bot.cli.train",
    "bot.cli.rag",
    "bot.cli.evaluate",
    "bot.cli.cluster",
]

app = typer.Typer(
    name="apprenti",
    help="Apprenti: a Slack assistant that learns from its team.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(ctx: typer.Context, verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more.")):
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.ensure_object(dict)


def build_app() -> typer.Typer:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def _plugin_commands() -> dict:
    """Commands from plugins (register_commands hook). Bad settings are reported when a command runs."""
    from bot.runtime import Runtime
    from bot.settings import SettingsError

    try:
        runtime = Runtime()
        runtime.plugins.hook.register_commands(cli=app)
    except SettingsError:
        return {}
    return {"runtime": runtime}


def main(argv: list[str] | None = None) -> None:
    # The hub is never reached unless the operator says so; a missing model then fails at once.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from bot.settings import SettingsError

    build_app()
    obj = _plugin_commands()
    try:
        app(args=argv, obj=obj, standalone_mode=True)
    except SettingsError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
