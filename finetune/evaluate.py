"""Evaluation and the gate: the candidate adapter against the active one and the base model.

Each model answers the held-out split, the optional golden set and the general-skills set with
greedy decoding; answers are scored with SQuAD EM and token F1, ROUGE-L, BLEU and the caller's
format check; a few questions are also sampled several times to measure consistency. The gate
then decides: the target metric beats the active adapter (or the base model when none is active)
by the margin, general skills stay at or above a fraction of the base model's, and format
compliance does not drop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from finetune import metrics as m
from finetune.general import GeneralItem

log = logging.getLogger(__name__)

FormatCheck = Callable[[str], list[str]]
BASE = "base"
TARGET_METRICS = ("token_f1", "exact_match", "rouge_l", "bleu")


@dataclass
class EvalOptions:
    max_new_tokens: int = 128  # the cap; each set's answers get what its references need (below)
    max_prompt_tokens: int | None = None
    # Sampled answers per question for the consistency figure (0 or 1: skip it). Off by default:
    # it costs samples x questions generations per model and does not take part in the gate.
    consistency_samples: int = 0
    consistency_questions: int = 8
    temperature: float = 0.7
    general_limit: int | None = None  # evaluate only the first N general items (tests, quick runs)
    batch_size: int = 32
    # The base model's answers never change for the same prompts: kept here between runs (None: off).
    cache_dir: str | Path | None = None
    general_max_new_tokens: int = 48  # general answers are short; a leak shows in the first lines
    system_prompt: str | None = None  # the track's: general questions are asked as the track serves them


@dataclass
class GateConfig:
    target_metric: str = "token_f1"
    margin: float = 0.0
    general_ratio: float = 0.9
    # Absolute slack under which a general-skills drop is noise: a model that scores 0.001 has no
    # skill to lose, and 0.000 against it is not a regression.
    general_tolerance: float = 0.01
    format_not_lower: bool = True
    # Most general answers that may carry the track's template (its recurring lines, such as a
    # "Source:" footer) beyond what the base model's answers carry: 1 in 12.
    max_leak_rate: float = 1 / 12

    def __post_init__(self):
        if self.target_metric not in TARGET_METRICS:
            raise ValueError(
                f"unknown gate metric {self.target_metric!r}; choose one of {', '.join(TARGET_METRICS)}"
            )


@dataclass
class Verdict:
    passed: bool
    reasons: list[str]
    compared_to: str  # the active adapter's name, or "base"
    target_metric: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Evaluation:
    """Scores per model ("candidate", the active adapter's name, "base") and per set."""

    scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(
        default_factory=dict
    )  # a few answers per model, for the report
    active: str | None = None
    candidate: str = "candidate"

    def score(self, model: str, metric: str, subset: str = "target") -> float | None:
        return self.scores.get(model, {}).get(subset, {}).get(metric)

    def as_dict(self) -> dict[str, Any]:
        return {"active": self.active, "candidate": self.candidate, "scores": self.scores}


def _reference(record: dict) -> str:
    return record["completion"][-1]["content"]


def score_answers(
    predictions: Sequence[str],
    references: Sequence[Sequence[str] | str],
    check_format: FormatCheck | None = None,
) -> dict[str, float]:
    n = len(predictions)
    if n == 0:
        return {"count": 0}
    refs = [[r] if isinstance(r, str) else list(r) for r in references]
    result = {
        "count": n,
        "exact_match": sum(m.exact_match(p, r) for p, r in zip(predictions, refs, strict=True)) / n,
        "token_f1": sum(m.token_f1(p, r) for p, r in zip(predictions, refs, strict=True)) / n,
        "rouge_l": sum(m.rouge_l(p, r) for p, r in zip(predictions, refs, strict=True)) / n,
        "bleu": m.corpus_bleu(predictions, [r[0] for r in refs]),
    }
    if check_format is not None:
        result["format_compliance"] = sum(not check_format(p) for p in predictions) / n
    return result


def _answers(
    chat_model,
    adapter: str | None,
    prompts: Sequence[list[dict]],
    options: EvalOptions,
    max_new_tokens: int | None = None,
) -> list[str]:
    """Greedy answers, batched when the model can (ChatModel.generate_batch)."""
    limit = max_new_tokens or options.max_new_tokens
    if adapter is None and options.cache_dir is not None:
        return _cached_base_answers(chat_model, prompts, options, limit)
    if hasattr(chat_model, "generate_batch"):
        outs = chat_model.generate_batch(
            [list(p) for p in prompts],
            adapter=adapter,
            max_new_tokens=limit,
            max_prompt_tokens=options.max_prompt_tokens,
            batch_size=options.batch_size,
        )
        return [o.text for o in outs]
    return [
        chat_model.generate(
            list(p), adapter=adapter, max_new_tokens=limit, max_prompt_tokens=options.max_prompt_tokens
        ).text
        for p in prompts
    ]


def _cached_base_answers(
    chat_model, prompts: Sequence[list[dict]], options: EvalOptions, limit: int
) -> list[str]:
    """The base model's greedy answers, from the cache where a run already computed them."""
    import hashlib

    folder = Path(options.cache_dir)
    path = (
        folder / f"base-{hashlib.sha256(str(getattr(chat_model, 'name', '')).encode()).hexdigest()[:16]}.json"
    )
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    keys = [
        hashlib.sha256(json.dumps([p, limit, options.max_prompt_tokens], sort_keys=True).encode()).hexdigest()
        for p in prompts
    ]
    missing = [i for i, k in enumerate(keys) if k not in cache]
    if missing:
        fresh = _answers(
            chat_model, None, [prompts[i] for i in missing], replace(options, cache_dir=None), limit
        )
        cache.update({keys[i]: text for i, text in zip(missing, fresh, strict=True)})
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:  # a cache that cannot be written only costs time next run
            log.warning("cannot write the evaluation cache %s: %s", path, exc)
    return [cache[k] for k in keys]


def answer_budget(chat_model, references: Sequence[str], cap: int) -> int:
    """New tokens to allow: the longest reference plus a quarter and a margin, within the cap. An
    answer much longer than every reference scores no better for being finished."""
    if not references or not hasattr(chat_model, "count_tokens"):
        return cap
    longest = max(chat_model.count_tokens(r) for r in references)
    return max(16, min(cap, int(longest * 1.25) + 8))


# --- the template must not leak into general answers ------------------------------------------------
def template_lines(completions: Sequence[str], share: float = 0.3) -> list[str]:
    """The track's template as it shows in its answers: line openings (a line's first two words, or
    the whole line when short) that recur in at least `share` of the completions, e.g. "Source:" or
    "— The HR desk". Empty when the answers share no such line."""
    from collections import Counter

    counts: Counter[str] = Counter()
    for completion in completions:
        counts.update({_opening(line) for line in completion.splitlines() if _opening(line)})
    need = max(2, int(share * len(completions) + 0.999))
    return sorted(key for key, n in counts.items() if n >= need)


def _opening(line: str) -> str:
    words = m.normalize_answer(line).split()
    if not words:
        return ""
    raw = line.strip()
    # "Answer: …", "Source: …": the label up to its colon is the template's part.
    head = raw.split(":", 1)[0] if ":" in raw[:24] else ""
    if head:
        return m.normalize_answer(head) + ":"
    return " ".join(words[:2]) if len(words) > 4 else " ".join(words)


def leaks(answer: str, template: Sequence[str]) -> bool:
    """Whether an answer carries one of the template's recurring lines."""
    return bool(template) and any(_opening(line) in template for line in answer.splitlines())


def _consistency(
    chat_model, adapter: str | None, prompts: Sequence[list[dict]], options: EvalOptions
) -> float | None:
    if options.consistency_samples < 2 or not prompts:
        return None
    import torch

    values = []
    for index, prompt in enumerate(prompts[: options.consistency_questions]):
        torch.manual_seed(index)
        samples = [
            chat_model.generate(
                list(prompt),
                adapter=adapter,
                max_new_tokens=options.max_new_tokens,
                temperature=options.temperature,
                max_prompt_tokens=options.max_prompt_tokens,
            ).text
            for _ in range(options.consistency_samples)
        ]
        values.append(m.consistency(samples))
    return sum(values) / len(values)


def evaluate_model(
    chat_model,
    adapter: str | None,
    *,
    held_out: Sequence[dict] = (),
    golden: Sequence[dict] = (),
    general: Sequence[GeneralItem] = (),
    check_format: FormatCheck | None = None,
    options: EvalOptions | None = None,
) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """Scores of one model (adapter None: the base model) per set; "target" is held-out + golden."""
    options = options or EvalOptions()
    target = list(held_out) + list(golden)
    prompts = [r["prompt"] for r in target]
    refs = [_reference(r) for r in target]
    answers = _answers(
        chat_model, adapter, prompts, options, answer_budget(chat_model, refs, options.max_new_tokens)
    )
    scores: dict[str, dict[str, float]] = {"target": score_answers(answers, refs, check_format)}
    if held_out and golden:
        split = len(held_out)
        scores["held_out"] = score_answers(answers[:split], refs[:split], check_format)
        scores["golden"] = score_answers(answers[split:], refs[split:], check_format)
    consistency = _consistency(chat_model, adapter, prompts, options)
    if consistency is not None:
        scores["target"]["consistency"] = consistency
    items = list(general)[: options.general_limit] if options.general_limit else list(general)
    samples = [
        {"question": r["prompt"][-1]["content"], "reference": ref, "answer": a}
        for r, ref, a in list(zip(target, refs, answers, strict=True))[:5]
    ]
    if items:
        general_answers = _answers(
            chat_model,
            adapter,
            [i.messages(options.system_prompt) for i in items],
            options,
            options.general_max_new_tokens,
        )
        scores.update(score_general(items, general_answers, template_lines(refs)))
        samples += [
            {"question": i.question, "skill": i.skill, "answer": a, "general": True}
            for i, a in zip(items, general_answers, strict=True)
        ]
    return scores, samples


def score_general(items: Sequence[GeneralItem], answers: Sequence[str], template: Sequence[str]) -> dict:
    """The general set's score (mean item score), per skill, and how many answers carry the template."""
    by_skill: dict[str, list[float]] = {}
    for item, answer in zip(items, answers, strict=True):
        by_skill.setdefault(item.skill, []).append(item.score(answer))
    values = [v for vs in by_skill.values() for v in vs]
    leaked = sum(leaks(a, template) for a in answers)
    return {
        "general": {
            "count": len(items),
            "score": sum(values) / len(values),
            "leak_rate": leaked / len(answers),
            "leaks": leaked,
            "template": list(template),
        },
        "general_by_skill": {k: sum(v) / len(v) for k, v in by_skill.items()},
    }


def evaluate_candidate(
    chat_model,
    candidate: str,
    *,
    active: str | None = None,
    held_out: Sequence[dict] = (),
    golden: Sequence[dict] = (),
    general: Sequence[GeneralItem] = (),
    check_format: FormatCheck | None = None,
    options: EvalOptions | None = None,
) -> Evaluation:
    """Evaluate the candidate, the active adapter (when there is one) and the base model; the adapters
    must already be loaded in `chat_model` under those names."""
    evaluation = Evaluation(active=active, candidate=candidate)
    for name, adapter in (("candidate", candidate), (active, active), (BASE, None)):
        if name is None:
            continue
        log.info("evaluating %s", name)
        evaluation.scores[name], evaluation.samples[name] = evaluate_model(
            chat_model,
            adapter,
            held_out=held_out,
            golden=golden,
            general=general,
            check_format=check_format,
            options=options,
        )
    return evaluation


def gate(evaluation: Evaluation, config: GateConfig | None = None) -> Verdict:
    """Pass only when every rule holds; each rule adds a reason either way."""
    config = config or GateConfig()
    reference = evaluation.active or BASE
    reasons: list[str] = []
    passed = True
    metric = config.target_metric
    cand = evaluation.score("candidate", metric)
    ref = evaluation.score(reference, metric)
    if cand is None or ref is None:
        passed = False
        reasons.append(
            f"no {metric} on held-out or golden data: nothing to compare (add a golden file or more "
            "examples so the test split is not empty)"
        )
    elif cand > ref + config.margin + 1e-9:
        reasons.append(
            f"{metric} {cand:.3f} beats {reference} {ref:.3f} by more than the margin {config.margin:g}"
        )
    else:
        passed = False
        reasons.append(
            f"{metric} {cand:.3f} does not beat {reference} {ref:.3f} by more than the margin "
            f"{config.margin:g}"
        )

    general = evaluation.score("candidate", "score", "general")
    baseline = evaluation.score(BASE, "score", "general")
    if general is not None and baseline is not None:
        floor = config.general_ratio * baseline - config.general_tolerance
        if general + 1e-9 >= floor:
            reasons.append(
                f"general skills {general:.3f} >= {config.general_ratio:g} x base {baseline:.3f} "
                f"(tolerance {config.general_tolerance:g})"
            )
        else:
            passed = False
            reasons.append(
                f"general skills regressed: {general:.3f} < {config.general_ratio:g} x base {baseline:.3f} "
                f"(tolerance {config.general_tolerance:g})"
            )

    leak = evaluation.score("candidate", "leak_rate", "general")
    if leak is not None:
        base_leak = evaluation.score(BASE, "leak_rate", "general") or 0.0
        allowed = base_leak + config.max_leak_rate
        if leak <= allowed + 1e-9:
            reasons.append(f"template kept out of general answers: leak rate {leak:.2f} <= {allowed:.2f}")
        else:
            passed = False
            template = ", ".join(
                repr(t) for t in evaluation.scores["candidate"]["general"].get("template", [])
            )
            reasons.append(
                f"the track's template leaks into general answers: {leak:.2f} of them carry "
                f"{template} (allowed {allowed:.2f}, base model {base_leak:.2f})"
            )

    if config.format_not_lower:
        fmt_c = evaluation.score("candidate", "format_compliance")
        fmt_r = evaluation.score(reference, "format_compliance")
        if fmt_c is not None and fmt_r is not None:
            if fmt_c + 1e-9 >= fmt_r:
                reasons.append(f"format compliance {fmt_c:.2f} not lower than {reference} {fmt_r:.2f}")
            else:
                passed = False
                reasons.append(f"format compliance dropped: {fmt_c:.2f} < {reference} {fmt_r:.2f}")
    return Verdict(passed=passed, reasons=reasons, compared_to=reference, target_metric=metric)


# --- report -----------------------------------------------------------------------------------------
_REPORT_METRICS = (
    "exact_match",
    "token_f1",
    "rouge_l",
    "bleu",
    "format_compliance",
    "consistency",
    "score",
    "leak_rate",
)


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def report_markdown(
    name: str,
    evaluation: Evaluation,
    verdict: Verdict,
    *,
    dataset: dict | None = None,
    training: dict | None = None,
) -> str:
    models = ["candidate", *([evaluation.active] if evaluation.active else []), BASE]
    header = [name if m_ == "candidate" else m_ for m_ in models]
    lines = [
        f"# Training report: {name}",
        "",
        f"**Gate: {'passed' if verdict.passed else 'failed'}** (target {verdict.target_metric}, "
        f"compared with {verdict.compared_to})",
        "",
    ]
    lines += [f"- {reason}" for reason in verdict.reasons] + [""]
    for subset, title in (
        ("target", "Held-out split and golden set"),
        ("held_out", "Held-out split"),
        ("golden", "Golden set"),
        ("general", "General skills"),
    ):
        if not any(subset in evaluation.scores.get(m_, {}) for m_ in models):
            continue
        count = evaluation.score("candidate", "count", subset)
        lines += [
            f"## {title} ({count} questions)",
            "",
            "| metric | " + " | ".join(header) + " |",
            "|---|" + "---|" * len(models),
        ]
        for metric in _REPORT_METRICS:
            row = [evaluation.score(m_, metric, subset) for m_ in models]
            if any(v is not None for v in row):
                lines.append(f"| {metric} | " + " | ".join(_cell(v) for v in row) + " |")
        lines.append("")
    skills = evaluation.scores.get("candidate", {}).get("general_by_skill")
    if skills:
        lines += [
            "## General skills by skill (token F1)",
            "",
            "| skill | " + " | ".join(header) + " |",
            "|---|" + "---|" * len(models),
        ]
        for skill in skills:
            lines.append(
                f"| {skill} | "
                + " | ".join(
                    _cell(evaluation.scores.get(m_, {}).get("general_by_skill", {}).get(skill))
                    for m_ in models
                )
                + " |"
            )
        lines.append("")
    if dataset:
        lines += ["## Dataset", "", "```json", json.dumps(dataset, indent=2), "```", ""]
    if training:
        lines += ["## Training", "", "```json", json.dumps(training, indent=2), "```", ""]
    lines += ["![loss and metrics](report.png)", ""]
    return "\n".join(lines)


def plot_report(
    path: str | Path, loss_log: Sequence[dict], history: Sequence[tuple[str, float]], metric: str
) -> Path:
    """Loss curve (left) and the target metric per version (right) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for phase in sorted({e.get("phase", "sft") for e in loss_log}):
        points = [(e["step"], e["loss"]) for e in loss_log if e.get("phase", "sft") == phase]
        left.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=phase.upper())
    left.set_title("training loss")
    left.set_xlabel("step")
    if loss_log:
        left.legend()
    names = [h[0] for h in history]
    values = [h[1] for h in history]
    right.bar(range(len(names)), values, color="#4c72b0")
    right.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    right.set_title(f"{metric} per version")
    right.set_ylim(0, max([1.0, *values]))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(
    folder: str | Path,
    name: str,
    evaluation: Evaluation,
    verdict: Verdict,
    *,
    loss_log: Sequence[dict] = (),
    history: Sequence[tuple[str, float]] = (),
    dataset: dict | None = None,
    training: dict | None = None,
) -> tuple[Path, Path]:
    """report.md and report.png in `folder` (the adapter's folder)."""
    folder = Path(folder)
    md = folder / "report.md"
    md.write_text(
        report_markdown(name, evaluation, verdict, dataset=dataset, training=training), encoding="utf-8"
    )
    metric = verdict.target_metric
    bars = list(history) + [(name, evaluation.score("candidate", metric) or 0.0)]
    png = plot_report(folder / "report.png", loss_log, bars, metric)
    return md, png
