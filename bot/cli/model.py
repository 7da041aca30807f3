"""`apprenti model ...`: the offline test model."""

from __future__ import annotations

from pathlib import Path

import typer

from bot.cli.common import bad_input, console, print_json

model_app = typer.Typer(help="Models: make the offline test model.", no_args_is_help=True)


@model_app.command("make-tiny")
def make_tiny_command(
    directory: Path = typer.Argument(..., help="Folder to write the model into."),
    size: str = typer.Option("tiny", help="tiny (~0.2M parameters), small (~29M) or medium (~102M)."),
    seed: int = typer.Option(0, help="Random seed of the weights."),
    init_range: float = typer.Option(
        0.02,
        "--init-range",
        help="Std of the random weights; 0.1 makes a model that visibly learns in a few steps.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
):
    """Write a small random Llama model with a locally trained tokenizer (no download)."""
    from finetune.tiny import SIZES, make_tiny

    if size not in SIZES:
        bad_input(f"--size must be one of {', '.join(SIZES)}, not {size!r}")
    if directory.exists() and not directory.is_dir():
        bad_input(f"{directory} exists and is not a folder")
    try:
        path = make_tiny(directory, size=size, seed=seed, initializer_range=init_range)
    except OSError as exc:
        bad_input(f"{directory}: cannot write the model: {exc.strerror or exc}")
    info = {"path": str(path.resolve()), "size": size, "seed": seed}
    if as_json:
        print_json(info)
    else:
        console.print(
            f"Wrote a {size} random model to {path}. Use it with APPRENTI_BASE_MODEL={path.resolve()}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
