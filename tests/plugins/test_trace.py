"""APPRENTI_TRACE_PLUGINS shows which hooks ran and which plugins answered, never the text they carried."""

from __future__ import annotations

import logging

from plugins.manager import make_manager, shape
from plugins.profile import Profile


def test_the_trace_names_hooks_and_plugins_but_logs_no_text(caplog):
    pm = make_manager(["tone", "pii"], entrypoints=False, trace=True)
    with caplog.at_level(logging.WARNING, logger="apprenti"):
        pm.hook.system_prompt(
            profile=Profile(tone="formal"), question="Write to jane.doe@example.com about my salary"
        )
        pm.hook.find_pii(text="Call me on +33 6 12 34 56 78, jane.doe@example.com")
    logged = caplog.text
    assert "hook system_prompt(" in logged and "tone" in logged and "hook find_pii" in logged
    assert (
        "jane.doe" not in logged
        and "salary" not in logged
        and "12 34" not in logged
        and "formal" not in logged
    )
    assert "<text, 45 chars>" in logged


def test_shape_keeps_sizes_and_keys_only():
    assert shape("secret words") == "<text, 12 chars>"
    assert (
        shape([{"text": "x"}]) == "<list of 1>"
        and shape({"text": "x", "title": "y"}) == "<dict: text, title>"
    )
    assert shape(3) == "3" and shape(None) == "None"
