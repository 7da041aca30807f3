"""Profile files as a table of good and bad cases; the runtime turns a bad file into exit code 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from bot.profiles import ProfileError, load_profiles
from bot.runtime import Runtime
from bot.settings import SettingsError, load_settings
from plugins.formats import collect_formats
from plugins.manager import make_manager

FORMATS = collect_formats(make_manager(["formats"], entrypoints=False))

GOOD = [
    ("", {"default": {"mode": "auto", "format": None}}),
    (
        "default: {mode: prompt, tone: 'friendly, tutoiement', language: fr}",
        {"default": {"mode": "prompt", "tone": "friendly, tutoiement", "language": "fr"}},
    ),
    (
        """
     default: {format: json, format_options: {schema: {type: object, required: [answer]}}}
     channels:
       C1: {format: sections, format_options: {sections: [Summary, Steps]}, ephemeral: true}
       C2: {tone: formal}
       C3: {format: minutes}
     """,
        {
            "default": {"format": "json"},
            "channels.C1": {
                "format": "sections",
                "format_options": {"sections": ["Summary", "Steps"]},
                "ephemeral": True,
            },
            "channels.C2": {
                "format": "json",
                "tone": "formal",
                "format_options": {"schema": {"type": "object", "required": ["answer"]}},
            },
            "channels.C3": {"format": "minutes", "format_options": {}},
        },
    ),
    (
        """
     default: {mode: rag, collections: [handbook], track: support}
     channels:
       C9: {track: sales-fr, collections: null, mode: prompt}
     """,
        {
            "default": {"mode": "rag", "collections": ["handbook"], "track": "support"},
            "channels.C9": {"track": "sales-fr", "collections": None, "mode": "prompt"},
        },
    ),
]


@pytest.mark.parametrize("yaml_text, expected", GOOD)
def test_good_files(tmp_path, yaml_text, expected):
    path = tmp_path / "apprenti.yaml"
    path.write_text(textwrap.dedent(yaml_text))
    profiles = load_profiles(path)
    profiles.check(FORMATS)
    every = profiles.all()
    for where, values in expected.items():
        for key, value in values.items():
            assert getattr(every[where], key) == value, (where, key)


BAD = [
    ("default: {colour: blue}", "profile default: unknown key(s) colour"),
    ("channels: {C1: {formatt: json}}", "profile channels.C1: unknown key(s) formatt"),
    ("default: {format: haiku}", "profile default: unknown format 'haiku'"),
    ("channels: {C1: {format: yaml}}", "profile channels.C1: unknown format 'yaml'"),
    ("default: {mode: magic}", "profile default: mode:"),
    ("default: {ephemeral: perhaps}", "profile default: ephemeral:"),
    ("default: {track: ../etc}", "profile default: track:"),
    (
        "default: {format: json, format_options: {schema: {type: 12}}}",
        "profile default: format json: format_options: invalid JSON Schema",
    ),
    (
        "channels: {C1: {format: json, format_options: {schema: {properties: []}}}}",
        "profile channels.C1: format json: format_options: invalid JSON Schema",
    ),
    (
        "default: {format: sections}",
        "profile default: format sections: format_options: format sections needs",
    ),
    ("default: {format_options: {sections: [A]}}", "profile default: format_options given but no format"),
    ("users: {}", "unknown top-level key(s) users"),
    ("default: [prompt]", "profile default must be a mapping"),
    ("default: {tone: a: b}", "invalid YAML"),
    ("- just\n- a list", "expected a mapping"),
]


@pytest.mark.parametrize("yaml_text, message", BAD)
def test_bad_files_name_the_problem(tmp_path, yaml_text, message):
    path = tmp_path / "apprenti.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ProfileError) as caught:
        load_profiles(path).check(FORMATS)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ProfileError, match="not found"):
        load_profiles(tmp_path / "nope.yaml")


def test_channel_lookup_falls_back_to_default(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("default: {tone: formal}\nchannels: {C1: {tone: casual}}")
    profiles = load_profiles(path)
    assert profiles.for_channel("C1").tone == "casual"
    assert profiles.for_channel("C2").tone == "formal"
    assert profiles.for_channel(None).tone == "formal"


def test_runtime_reports_a_format_whose_plugin_is_disabled(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("default: {format: json}")
    assert Runtime(load_settings(config=path), entrypoints=False).profiles.default.format == "json"
    with pytest.raises(SettingsError, match="unknown format 'json'; available: none"):
        Runtime(load_settings(config=path, plugins=["pii", "tone"]), entrypoints=False).profiles  # noqa: B018


def test_command_line_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("channels: {C7: {fromat: json}}")
    env = {
        "APPRENTI_CONFIG": str(path),
        "APPRENTI_HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli.main", "ask", "hello"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "channels.C7" in done.stderr and "fromat" in done.stderr
