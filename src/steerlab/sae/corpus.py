"""Offline text for training and scoring transcoders: the shipped ASA prompts, MCQ questions with their answer
letter and calculator conversations (no network, no downloaded corpus)."""

from __future__ import annotations

import random


def _general() -> list[list[dict]]:
    from ..data.asa_data import load_asa_split
    from ..data.mcq_items import format_mcq_prompt, load_builtin_mcq

    convs = [
        [{"role": "user", "content": e.prompt}]
        for s in ("cal", "train", "valid", "test")
        for e in load_asa_split(s)
    ]
    convs += [
        [{"role": "user", "content": format_mcq_prompt(it)}, {"role": "assistant", "content": it.gold_letter}]
        for it in load_builtin_mcq()
    ]
    return convs


def general_prompts(n: int, seed: int) -> list[list[dict]]:
    """``n`` non-calculator conversations, shuffled with ``seed``."""
    convs = _general()
    random.Random(seed).shuffle(convs)
    return convs[:n]


def calc_conversations(rows: list[dict]) -> list[list[dict]]:
    """Calculator rows (prompt, completion) as user/assistant turns."""
    return [
        [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]
        for r in rows
    ]


def offline_corpus(n_train: int, n_eval: int, seed: int) -> tuple[list, list]:
    """Disjoint train / held-out conversations mixing general text and 600 calculator conversations."""
    from .calc_data import make_calc_splits

    convs = _general() + calc_conversations(
        make_calc_splits(n_train=600, n_eval_per_subset=50, seed=seed)["train"]
    )
    random.Random(seed).shuffle(convs)
    return convs[:n_train], convs[n_train : n_train + n_eval]
