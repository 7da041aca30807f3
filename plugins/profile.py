"""A channel profile: which plugins and settings apply to a channel. Plain data, shared by every part."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PROFILE_KEYS = (
    "mode",
    "tone",
    "format",
    "format_options",
    "track",
    "collections",
    "ephemeral",
    "language",
    "team_answers",
)


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["prompt", "rag", "auto"] = "auto"
    tone: str | None = None
    format: str | None = None
    format_options: dict[str, Any] = Field(default_factory=dict)
    # Adapter names are `track/vN` and become folder names: keep tracks to safe characters.
    track: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    collections: list[str] | None = None
    # Whether answers in this channel use the team's knowledge entries (approved fact corrections).
    team_answers: bool = True
    ephemeral: bool = False
    language: str | None = Field(None, min_length=2, max_length=40)

    def merged(self, overrides: dict[str, Any]) -> Profile:
        """This profile with the given keys replaced (a channel's overrides over the default).

        A channel that picks another format starts from no format options: the default's options
        belong to the default's format.
        """
        base = self.model_dump()
        if "format" in overrides and overrides["format"] != self.format and "format_options" not in overrides:
            base["format_options"] = {}
        return Profile(**{**base, **overrides})
