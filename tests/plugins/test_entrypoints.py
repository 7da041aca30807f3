"""A third-party plugin found through the `apprenti` entry-point group changes the prompt, and
disappears when APPRENTI_PLUGINS leaves it out."""

from __future__ import annotations

import sys

import pytest

from bot.assistant import Assistant
from bot.llm import LLM, Completion
from bot.settings import load_settings
from plugins.manager import make_manager


class Echo(LLM):
    def generate(self, messages, track="default"):
        return Completion(text="ok", messages=messages)


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A distribution installed in a folder on sys.path: a module and its entry_points.txt."""
    (tmp_path / "pirate_plugin.py").write_text(
        "from plugins.hookspecs import hookimpl\n\n"
        "@hookimpl\n"
        "def system_prompt(profile):\n"
        "    return 'Talk like a pirate.'\n"
    )
    dist = tmp_path / "apprenti_pirate-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: apprenti-pirate\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[apprenti]\npirate = pirate_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "pirate"
    sys.modules.pop("pirate_plugin", None)


def system_of(pm, engine):
    answer = Assistant(engine, pm, Echo(), fewshot_k=0).answer("What now?", store=False)
    return answer.prompt[0]["content"]


def test_entry_point_plugin_changes_the_prompt_and_obeys_the_allow_list(
    installed_plugin, engine, monkeypatch
):
    pm = make_manager(load_settings().plugins)
    assert "Talk like a pirate." in system_of(pm, engine)

    monkeypatch.setenv("APPRENTI_PLUGINS", "pii,tone,formats")
    pm = make_manager(load_settings().plugins)
    assert pm.get_plugin("pirate") is None
    assert "Talk like a pirate." not in system_of(pm, engine)
