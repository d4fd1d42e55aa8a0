"""PAS: steering vectors from right-vs-wrong multiple-choice answers, swept over layers x strengths, picked on
validation, reported on test with the baselines that expose answer-letter leaks."""

from .baselines import leak_report, letter_prior_baseline, majority_letter_baseline
from .config import PasConfig, load_config
from .mcq import MCQItem, format_mcq_prompt, load_benchmark, shuffle_options

__all__ = [
    "MCQItem",
    "PasConfig",
    "format_mcq_prompt",
    "leak_report",
    "letter_prior_baseline",
    "load_benchmark",
    "load_config",
    "majority_letter_baseline",
    "shuffle_options",
]
