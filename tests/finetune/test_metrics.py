from __future__ import annotations

import pytest

from finetune.metrics import consistency, corpus_bleu, exact_match, normalize_answer, rouge_l, token_f1


def test_squad_normalisation_and_exact_match():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert exact_match("the eiffel tower", ["Eiffel Tower.", "Paris"]) == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0


def test_token_f1_is_squad_f1_max_over_references():
    # pred tokens: denver broncos ; ref: broncos -> P=1/2, R=1 -> F1=2/3
    assert token_f1("Denver Broncos", "Broncos") == pytest.approx(2 / 3)
    assert token_f1("Denver Broncos", ["Carolina", "Denver Broncos"]) == 1.0
    assert token_f1("", "") == 1.0 and token_f1("a", "b") == 0.0


def test_rouge_bleu_consistency():
    assert rouge_l("call the help desk", "Call the help desk.") == pytest.approx(1.0)
    assert 0 < rouge_l("call the desk", "call the help desk") < 1
    assert corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    assert corpus_bleu(["a b"], ["x y z w"]) < 0.1
    assert consistency(["same answer", "same answer", "same answer"]) == 1.0
    assert consistency(["one thing", "another"]) == 0.0
