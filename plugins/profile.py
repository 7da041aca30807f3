"""A channel profile: which plugins and settings apply to a channel. Plain data, shared by every part."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PROFILE_KEYS = ("mode", "tone", "format", "format_options", "track", "collections", "ephemeral", "language")


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["prompt", "rag", "auto"] = "auto"
    tone: str | None = None
    format: str | None = None
    format_options: dict[str, Any] = Field(default_factory=dict)
    track: str = "default"
    collections: list[str] | None = None
    ephemeral: bool = False
    language: str | None = None

    def merged(self, overrides: dict[str, Any]) -> Profile:
        """This profile with the given keys replaced (a channel's overrides over the default)."""
        return Profile(**{**self.model_dump(), **overrides})
