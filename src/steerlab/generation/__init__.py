"""Generation and next-token scoring (greedy or sampled; KV cache; shared prefix; several conditions at once)."""

from .api import RowSetup, generate, generate_conditions, next_token_scores
from .decode import Generation, StopFn, TokenFn
from .options import GenerateOptions
from .prefill import shared_len
from .rules import BannedStart, ForcedPrefix, LogitsRule

__all__ = [
    "BannedStart",
    "ForcedPrefix",
    "GenerateOptions",
    "Generation",
    "LogitsRule",
    "RowSetup",
    "StopFn",
    "TokenFn",
    "generate",
    "generate_conditions",
    "next_token_scores",
    "shared_len",
]
