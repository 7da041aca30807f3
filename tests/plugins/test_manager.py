from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path

import pytest

from plugins import hookspecs
from plugins.hookspecs import hookimpl
from plugins.manager import BUILTINS, PluginError, make_manager, plugin_names
from plugins.pii import scrub

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def _specs():
    return [
        name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "apprenti_spec")
    ]


def test_every_hook_has_a_one_line_docstring():
    specs = _specs()
    assert len(specs) >= 10
    for name in specs:
        doc = getattr(hookspecs, name).__doc__
        assert doc and doc.strip() and "\n" not in doc.strip(), name
        assert doc.strip().startswith("Called"), name


@pytest.mark.parametrize("name", _specs())
def test_every_hook_is_documented_with_its_signature(name):
    signature = f"{name}({', '.join(inspect.signature(getattr(hookspecs, name)).parameters)})"
    assert re.search(rf"^### `{re.escape(signature)}`$", DOCS.read_text(), re.M), (
        f"docs/plugins.md lacks a '### `{signature}`' section"
    )


def test_builtins_load_and_can_be_limited():
    assert set(BUILTINS) <= set(plugin_names(make_manager(entrypoints=False)))
    assert plugin_names(make_manager(["pii"], entrypoints=False)) == ["pii"]
    assert plugin_names(make_manager([], entrypoints=False)) == []


def test_unknown_plugin_name_is_an_error_naming_it():
    with pytest.raises(PluginError, match="nosuch"):
        make_manager(["pii", "nosuch"], entrypoints=False)


def test_extra_plugins_register_and_obey_the_allow_list():
    class Shout:
        @hookimpl
        def system_prompt(self):
            return "SHOUT"

    pm = make_manager(entrypoints=False, extra={"shout": Shout()})
    assert "SHOUT" in pm.hook.system_prompt(profile=None, question="q")
    pm = make_manager(["pii"], entrypoints=False, extra={"shout": Shout()})
    assert "SHOUT" not in pm.hook.system_prompt(profile=None, question="q")


def test_tracing_logs_hook_calls(caplog):
    pm = make_manager(["pii"], entrypoints=False, trace=True)
    with caplog.at_level(logging.WARNING, logger="apprenti.plugins"):
        scrub(pm, "write to a@b.org")
    assert any("find_pii" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail jane.doe+hr@example.co.uk today", "Mail [EMAIL] today"),
        ("Call +33 6 12 34 56 78 now", "Call [PHONE] now"),
        ("Appelle le 06.12.34.56.78 stp", "Appelle le [PHONE] stp"),
        ("US line (555) 123-4567.", "US line [PHONE]."),
        ("IBAN FR76 3000 6000 0112 3456 7890 189 please", "IBAN [IBAN] please"),
        ("card 4111 1111 1111 1111 expires", "card [CARD] expires"),
        # Not personal data: dates, amounts, versions, short numbers.
        ("Meeting on 2026-11-21 at 10:30", "Meeting on 2026-11-21 at 10:30"),
        ("Budget: 1,250,000 EUR in 2026", "Budget: 1,250,000 EUR in 2026"),
        ("Upgrade to 3.11.7 before 12 Dec", "Upgrade to 3.11.7 before 12 Dec"),
        ("card 4111 1111 1111 1112 is not valid", "card 4111 1111 1111 1112 is not valid"),
    ],
)
def test_pii_scrubbing(text, expected):
    assert scrub(make_manager(["pii"], entrypoints=False), text) == expected


def test_scrub_without_pii_plugins_leaves_text_alone():
    assert scrub(make_manager([], entrypoints=False), "a@b.org") == "a@b.org"
