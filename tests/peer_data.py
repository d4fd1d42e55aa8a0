"""Contrast pairs shared by the peer-parity tests and ``benchmarks/bench_vs_peers.py`` (plain text, no template)."""

from __future__ import annotations

SUBJECTS = [
    "the weather today",
    "my new job",
    "this restaurant",
    "the movie we saw",
    "your idea",
    "the train ride",
    "the book I finished",
    "our neighbours",
    "the concert",
    "my garden",
    "the hotel room",
    "this song",
    "the meeting",
    "the new phone",
    "my holiday",
    "the football match",
]
POSITIVE = [
    "I absolutely love {}; it fills me with joy.",
    "Honestly, {} made me so happy and grateful.",
    "What a wonderful surprise {} turned out to be!",
    "I feel cheerful and delighted about {}.",
    "{} is the best thing that happened this week.",
    "Everything about {} puts a big smile on my face.",
    "I am thrilled and excited about {}.",
    "{} was a pure delight from start to finish.",
]
NEGATIVE = [
    "I absolutely hate {}; it fills me with dread.",
    "Honestly, {} made me so sad and bitter.",
    "What a horrible letdown {} turned out to be!",
    "I feel gloomy and miserable about {}.",
    "{} is the worst thing that happened this week.",
    "Everything about {} puts a deep frown on my face.",
    "I am furious and disgusted about {}.",
    "{} was a pure misery from start to finish.",
]
TEST_PROMPTS = [
    "Tell me how you feel about Mondays.",
    "Write one sentence about the sea.",
    "My day was",
    "Describe your favourite food in a few words, please, and why you like it.",
]


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def contrast_pairs(n: int) -> list[tuple[str, str]]:
    """``n`` (positive, negative) sentence pairs that differ only in sentiment words."""
    out = []
    for i in range(n):
        subj = SUBJECTS[i % len(SUBJECTS)]
        form = (i // len(SUBJECTS)) % len(POSITIVE)
        out.append((_cap(POSITIVE[form].format(subj)), _cap(NEGATIVE[form].format(subj))))
    return out
