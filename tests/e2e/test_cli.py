"""The command line as a user runs it: a fresh home, the tiny model, real SQLite."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tests.cli import run_main

APPRENTI = [sys.executable, "-m", "bot.cli.main"]


def test_ask_answers_offline_and_stores_the_interaction(tmp_path, isolated_env):
    env = {**os.environ, "APPRENTI_HOME": str(isolated_env)}
    model = tmp_path / "tiny"
    made = subprocess.run(
        [*APPRENTI, "model", "make-tiny", str(model), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["path"] == str(model.resolve())

    env["APPRENTI_BASE_MODEL"] = str(model)
    done = subprocess.run(
        [*APPRENTI, "ask", "Bonjour, écrivez à jean@exemple.fr", "--json", "--user", "U42"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert set(answer) >= {"answer", "mode", "sources", "adapter", "interaction_id", "prompt"}
    assert answer["mode"] == "prompt" and answer["adapter"] is None and answer["sources"] == []
    assert answer["prompt"][0]["role"] == "system"
    assert answer["prompt"][-1] == {"role": "user", "content": "Bonjour, écrivez à jean@exemple.fr"}

    db = sqlite3.connect(isolated_env / "apprenti.db")
    question, stored_answer, user = db.execute(
        "select question, answer, user_id from interaction where id = ?", (answer["interaction_id"],)
    ).fetchone()
    assert question == "Bonjour, écrivez à [EMAIL]"  # scrubbed before storage
    assert user == "U42"
    assert stored_answer == answer["answer"] or "[" in stored_answer


def test_missing_model_folder_is_bad_input(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("APPRENTI_BASE_MODEL", str(tmp_path / "nope"))
    code, _, err = run_main(["ask", "hi"], capsys)
    assert code == 2
    assert "nope" in err and "make-tiny" in err


def test_unknown_hub_id_fails_fast_offline(capsys, monkeypatch):
    monkeypatch.setenv("APPRENTI_BASE_MODEL", "acme/no-such-model")
    code, _, err = run_main(["ask", "hi"], capsys)
    assert code == 2
    assert "acme/no-such-model" in err and "HF_HUB_OFFLINE" in err


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"APPRENTI_DATABASE_URL": "postgres//broken"}, "APPRENTI_DATABASE_URL"),
        ({"APPRENTI_MAX_NEW_TOKENS": "0"}, "APPRENTI_MAX_NEW_TOKENS"),
        ({"APPRENTI_PLUGINS": "pii,ghost"}, "ghost"),
    ],
)
def test_bad_settings_exit_2_naming_the_culprit(capsys, monkeypatch, env, expected):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, _, err = run_main(["ask", "hi"], capsys)
    assert code == 2
    assert expected in err


def test_unwritable_home_exits_2(capsys, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("APPRENTI_HOME", str(blocker / "home"))
    code, _, err = run_main(["ask", "hi"], capsys)
    assert code == 2 and "APPRENTI_HOME" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("default:\n  mode: rag\n  tone: [unclosed\n", "apprenti.yaml:4"),
        ("default:\n  colour: blue\n", "unknown key(s) colour"),
        ("default:\n  mode: telepathy\n", "mode"),
        ("channels:\n  C1:\n    format: haiku\n", "unknown format 'haiku'"),
    ],
)
def test_broken_profile_file_exits_2_naming_it(capsys, monkeypatch, tmp_path, content, expected):
    path = tmp_path / "apprenti.yaml"
    path.write_text(content)
    monkeypatch.setenv("APPRENTI_CONFIG", str(path))
    code, _, err = run_main(["ask", "hi"], capsys)
    assert code == 2
    assert expected in err and str(path) in err.replace("\n", "")


def test_bad_mode_is_usage_error(capsys):
    code, _, err = run_main(["ask", "hi", "--mode", "psychic"], capsys)
    assert code == 2 and "--mode" in err


def test_doctor_reports_each_check_as_json(capsys, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("APPRENTI_BASE_MODEL", str(tiny_model_dir))
    code, out, _ = run_main(["doctor", "--json"], capsys)
    report = json.loads(out)
    names = {c["name"]: c["status"] for c in report["checks"]}
    assert names["database"] == "ok" and names["model"] == "ok" and names["SLACK_BOT_TOKEN"] == "warn"
    assert code == 0 and report["ok"] is True


def test_doctor_fails_on_a_missing_model(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("APPRENTI_BASE_MODEL", str(tmp_path / "none"))
    code, out, _ = run_main(["doctor", "--json"], capsys)
    assert code == 1
    assert {c["name"]: c["status"] for c in json.loads(out)["checks"]}["model"] == "fail"
