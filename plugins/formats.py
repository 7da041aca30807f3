"""The registry of output formats. Plugins add formats through the register_formats hook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OutputFormat:
    """A named output format: prompt instructions, a validator and a safe repair."""

    name: str
    description: str
    instructions: Callable[[dict[str, Any]], str]
    check: Callable[[str, dict[str, Any]], list[str]]
    repair: Callable[[str, dict[str, Any]], str | None] = lambda answer, options: None
    validate_options: Callable[[dict[str, Any]], list[str]] = field(default=lambda options: [])


def collect_formats(pm) -> dict[str, OutputFormat]:
    formats: dict[str, OutputFormat] = {}

    def register(fmt: OutputFormat) -> None:
        if fmt.name in formats:
            raise ValueError(f"output format {fmt.name!r} is registered twice")
        formats[fmt.name] = fmt

    pm.hook.register_formats(register=register)
    return formats
