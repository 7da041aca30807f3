"""`apprenti eval answers FILE`: every question answered through the pipeline, in file order, scored."""

from __future__ import annotations

import json

from tests.cli import run_main


def test_eval_answers_scores_each_item_in_file_order(tmp_path, capsys, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("APPRENTI_BASE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("APPRENTI_PII", "off")
    monkeypatch.setenv("APPRENTI_PLUGINS", "tone")
    monkeypatch.setenv("APPRENTI_MAX_NEW_TOKENS", "8")
    golden = tmp_path / "golden.jsonl"
    golden.write_text(
        "\n".join(
            json.dumps(i)
            for i in [
                {"question": "How long is the notice?", "answers": ["two weeks"]},
                {"question": "Summarise the policy.", "reference": "Holidays are requested two weeks ahead."},
                {
                    "question": "Qui valide ?",
                    "answers": ["le responsable"],
                    "source": "extra keys are kept aside",
                },
            ]
        )
        + "\n"
    )
    code, out, err = run_main(
        ["eval", "answers", str(golden), "--mode", "prompt", "--adapter", "base", "--json"], capsys
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["count"] == 3 and [i["question"] for i in result["items"]] == [
        "How long is the notice?",
        "Summarise the policy.",
        "Qui valide ?",
    ]
    assert [i["hit"] is None for i in result["items"]] == [False, True, False]  # a reference is scored by F1
    assert 0 <= result["accuracy"] <= 1 and 0 <= result["token_f1"] <= 1
    assert all(i["answer"] and i["sources"] == [] and "f1" in i for i in result["items"])


def test_eval_answers_names_each_bad_line(tmp_path, capsys):
    golden = tmp_path / "golden.jsonl"
    golden.write_text('{"question": "ok?", "answers": ["yes"]}\n{not json\n{"question": "no answers"}\n')
    code, _, err = run_main(["eval", "answers", str(golden), "--json"], capsys)
    assert code == 2
    said = " ".join(err.split())  # the console wraps long lines
    assert "line 2: invalid JSON" in said and "line 3: needs 'answers'" in said
