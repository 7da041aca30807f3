from __future__ import annotations

import pytest

from plugins.manager import make_manager
from plugins.profile import Profile


@pytest.fixture(scope="module")
def pm():
    return make_manager(["tone"], entrypoints=False)


@pytest.mark.parametrize(
    "tone, language, expected, absent",
    [
        (
            "formal, vouvoiement",
            None,
            ["formal, professional register", "« vous » (vouvoiement)"],
            ["tutoiement"],
        ),
        (
            "amical; tutoiement; court",
            "fr",
            ["Always answer in French", "warm, friendly", "« tu » (tutoiement)", "at most three sentences"],
            ["vouvoiement"],
        ),
        (
            "detailed, no emoji",
            "en-GB",
            ["Always answer in English", "detailed answers", "Do not use emoji"],
            [],
        ),
        ("signature: — L'équipe RH", None, ["signature on its own line: — L'équipe RH"], []),
        ("like a pirate", "Klingon", ["Tone: like a pirate.", "Always answer in Klingon"], []),
        ("short, concise, brief", None, ["at most three sentences"], []),
    ],
)
def test_tone_becomes_instructions(pm, tone, language, expected, absent):
    prompt = "\n".join(
        p for p in pm.hook.system_prompt(profile=Profile(tone=tone, language=language), question="q") if p
    )
    for text in expected:
        assert text in prompt
    for text in absent:
        assert text not in prompt
    assert prompt.count("at most three sentences") <= 1


def test_no_tone_adds_nothing(pm):
    assert not any(pm.hook.system_prompt(profile=Profile(), question="q"))
