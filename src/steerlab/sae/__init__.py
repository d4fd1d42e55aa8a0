"""Tool-use transcoders: sparse MLP replacements with delta latents, splices, calculator data and metrics."""

from ..tools.safe_eval import safe_arith_eval
from .transcoder import DeltaTranscoder, Transcoder, load_transcoder, save_transcoder

__all__ = ["DeltaTranscoder", "Transcoder", "load_transcoder", "safe_arith_eval", "save_transcoder"]
