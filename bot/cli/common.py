"""Helpers every command shares: the runtime, JSON output, and errors with exit codes."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def runtime(ctx: typer.Context):
    """The process's Runtime, created on first use from the settings."""
    from bot import logs
    from bot.runtime import Runtime

    obj = ctx.ensure_object(dict)
    if "runtime" not in obj:
        obj["runtime"] = Runtime()
    logs.configure(obj["runtime"].settings.log_format)  # idempotent; the runtime may come made (main.py)
    return obj["runtime"]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def bad_input(message: str) -> NoReturn:
    fail(message, EXIT_BAD_INPUT)
