"""Answer-level metrics: SQuAD's exact match and token F1, ROUGE-L, BLEU, and sampling consistency.

EM and F1 follow the official SQuAD v1.1 script: lowercase, drop punctuation, drop the articles
a/an/the, collapse whitespace; F1 is the token-overlap F1; each takes the max over the references.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from itertools import combinations

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _as_list(references: str | Sequence[str]) -> list[str]:
    return [references] if isinstance(references, str) else list(references)


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    return max(float(normalize_answer(prediction) == normalize_answer(ref)) for ref in _as_list(references))


def _f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        # SQuAD gives 1.0 when both are empty and 0.0 when only one is.
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    return max(_f1(prediction, ref) for ref in _as_list(references))


_rouge_scorer = None


def rouge_l(prediction: str, references: str | Sequence[str]) -> float:
    """ROUGE-L F-measure (rouge-score, with stemming), max over references."""
    global _rouge_scorer
    if _rouge_scorer is None:
        from rouge_score import rouge_scorer

        _rouge_scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return max(_rouge_scorer.score(ref, prediction)["rougeL"].fmeasure for ref in _as_list(references))


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu, 0-100 scaled to 0-1) of one reference per prediction."""
    if not predictions:
        return 0.0
    import sacrebleu

    return sacrebleu.corpus_bleu(list(predictions), [list(references)]).score / 100.0


def consistency(samples: Sequence[str]) -> float:
    """Mean pairwise token F1 between sampled answers to one question: 1.0 means the model says the
    same thing every time."""
    if len(samples) < 2:
        return 1.0
    pairs = list(combinations(samples, 2))
    return sum(_f1(a, b) for a, b in pairs) / len(pairs)
