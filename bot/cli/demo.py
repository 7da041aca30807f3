"""`apprenti demo`: the whole loop offline, in a fresh home, through the real Bolt app."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from bot.cli.common import console, print_json


def demo(
    home: Path | None = typer.Option(
        None, "--home", help="Folder for the demo's data (default: a new temporary folder)."
    ),
    examples: int = typer.Option(
        24, "--examples", min=4, help="Corrections the team makes before training starts."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Also print the measurements as one JSON document at the end."
    ),
):
    """Ask, answer with sources, correct, review, train, evaluate, activate, answer again, roll back —
    offline on the bundled SmolLM2-135M-Instruct, printing each step as people would see it in Slack."""
    from bot.demo.run import Demo

    home = home or Path(tempfile.mkdtemp(prefix="apprenti-demo-"))
    result = Demo(home, console, examples=examples).run()
    if as_json:
        print_json({k: v for k, v in result.items() if k != "transcript"})


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
