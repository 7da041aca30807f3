"""A toy support task a tiny model learns in seconds: the answer depends on the team named."""

from __future__ import annotations

import random

from storage.hashing import split_for

ANSWERS = {
    "alpha": "Badge office, floor two.",
    "bravo": "Call the help desk.",
    "delta": "Ask Marie in finance.",
    "gamma": "Use the holiday form.",
}


def questions(n_per_team: int, start: int = 0) -> list[tuple[str, str]]:
    return [
        (f"Question {i} about {team}?", answer)
        for i in range(start, start + n_per_team)
        for team, answer in ANSWERS.items()
    ]


def shuffled_train_answers(pairs: list[tuple[str, str]], seed: int = 1) -> list[tuple[str, str]]:
    """Shuffle the answers of the train-split questions; the held-out ones keep their true answers."""
    train = [i for i, (q, _) in enumerate(pairs) if split_for(q) == "train"]
    answers = [pairs[i][1] for i in train]
    rng = random.Random(seed)
    while True:
        rng.shuffle(answers)
        if sum(a == pairs[i][1] for a, i in zip(answers, train, strict=True)) <= len(train) // 4:
            break
    out = list(pairs)
    for i, answer in zip(train, answers, strict=True):
        out[i] = (pairs[i][0], answer)
    return out
