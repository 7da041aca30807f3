"""Channel profiles from the YAML file named by APPRENTI_CONFIG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from plugins.profile import PROFILE_KEYS, Profile

# `plugins:` holds each plugin's own options (bot.runtime.plugin_config hands them to its startup).
TOP_LEVEL_KEYS = frozenset({"default", "channels", "plugins"})


class ProfileError(Exception):
    """The profile file is unreadable or invalid; the message names the file, the profile and the key."""


class Profiles:
    def __init__(
        self,
        default: Profile | None = None,
        channels: dict[str, Profile] | None = None,
        source: str | None = None,
    ):
        self.default = default or Profile()
        self.channels = channels or {}
        self.source = source

    def for_channel(self, channel: str | None) -> Profile:
        return self.channels.get(channel or "", self.default)

    def all(self) -> dict[str, Profile]:
        return {"default": self.default, **{f"channels.{k}": v for k, v in self.channels.items()}}

    def check(self, formats: dict[str, Any]) -> None:
        """Names used by the profiles must exist: each format, and each format's options."""
        for where, profile in self.all().items():
            if profile.format is None:
                if profile.format_options:
                    raise ProfileError(f"{self.source}: profile {where}: format_options given but no format")
                continue
            if profile.format not in formats:
                raise ProfileError(
                    f"{self.source}: profile {where}: unknown format {profile.format!r}; "
                    f"available: {', '.join(sorted(formats)) or 'none'}"
                )
            try:
                problems = formats[profile.format].validate_options(profile.format_options)
            except Exception as exc:  # noqa: BLE001 - a plugin's validator failing is still a config error
                problems = [f"{type(exc).__name__}: {exc}"]
            if problems:
                raise ProfileError(
                    f"{self.source}: profile {where}: format {profile.format}: format_options: "
                    f"{'; '.join(problems)}"
                )


def _profile(data: Any, where: str, source: str, base: Profile | None = None) -> Profile:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: profile {where} must be a mapping of keys, got {type(data).__name__}")
    unknown = sorted(set(data) - set(PROFILE_KEYS))
    if unknown:
        raise ProfileError(
            f"{source}: profile {where}: unknown key(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(PROFILE_KEYS)}"
        )
    try:
        return base.merged(data) if base else Profile(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ProfileError(f"{source}: profile {where}: {key}: {first['msg']}") from None


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{path}: profile file not found (APPRENTI_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read profile file: {exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ProfileError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping with `default:` and `channels:`")
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise ProfileError(
            f"{path}: unknown top-level key(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(TOP_LEVEL_KEYS))}"
        )
    return data


def plugin_options(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """The `plugins:` section of the profile file: each plugin's own options, by plugin name."""
    if path is None:
        return {}
    section = _read(Path(path)).get("plugins") or {}
    if not isinstance(section, dict):
        raise ProfileError(f"{path}: `plugins:` must map plugin names to their options")
    for name, options in section.items():
        if not isinstance(options, dict):
            raise ProfileError(
                f"{path}: plugins.{name} must be a mapping of options, got {type(options).__name__}"
            )
    return {str(name): dict(options) for name, options in section.items()}


def load_profiles(path: str | Path | None) -> Profiles:
    """Read and validate the profile file; no file means one default profile."""
    if path is None:
        return Profiles()
    path = Path(path)
    data = _read(path)
    source = str(path)
    default = _profile(data.get("default"), "default", source)
    channels_data = data.get("channels") or {}
    if not isinstance(channels_data, dict):
        raise ProfileError(f"{path}: `channels:` must map channel ids to profiles")
    channels = {
        str(cid): _profile(conf, f"channels.{cid}", source, base=default)
        for cid, conf in channels_data.items()
    }
    return Profiles(default, channels, source)
