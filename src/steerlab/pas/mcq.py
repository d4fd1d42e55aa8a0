"""Multiple-choice items live in ``steerlab.data.mcq_items`` (the transcoder corpus reads them too); re-exported
here for PAS users."""

from ..data.mcq_items import (
    HF_BENCHMARKS,
    LETTERS,
    MCQItem,
    format_mcq_prompt,
    letter_tokens,
    load_benchmark,
    load_builtin_mcq,
    load_mcq_jsonl,
    option_seed,
    shuffle_options,
    split_items,
)

__all__ = [
    "HF_BENCHMARKS",
    "LETTERS",
    "MCQItem",
    "format_mcq_prompt",
    "letter_tokens",
    "load_benchmark",
    "load_builtin_mcq",
    "load_mcq_jsonl",
    "option_seed",
    "shuffle_options",
    "split_items",
]
