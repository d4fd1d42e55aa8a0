"""Tiny random models of every supported family, built from configs (no download), for tests and demos."""

from __future__ import annotations

import string

import torch

from ..base import UserError
from .loading import LoadedModel, wrap_model

FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3", "gpt2", "lfm2")
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def char_tokenizer() -> object:
    """A character-level fast tokenizer with ChatML special tokens; enough to exercise every code path."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    chars = list(string.printable)
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>", "</s>"],
    )
    tok.chat_template = CHATML
    return tok


def tiny_config(
    family: str, vocab_size: int, n_layers: int = 4, hidden: int = 32, sliding_window: int | None = None
) -> object:
    import transformers as T

    common = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=5,
    )
    if family == "llama":
        return T.LlamaConfig(**common)
    if family == "mistral":
        return T.MistralConfig(**common, sliding_window=sliding_window)
    if family == "qwen2":
        return T.Qwen2Config(**common)
    if family == "qwen3":
        return T.Qwen3Config(**common, head_dim=hidden // 4)
    if family == "gemma2":
        return T.Gemma2Config(**common, head_dim=hidden // 4, sliding_window=sliding_window or 4096)
    if family == "gemma3":
        return T.Gemma3TextConfig(**common, head_dim=hidden // 4, sliding_window=sliding_window or 4096)
    if family == "gpt2":
        return T.GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden,
            n_layer=n_layers,
            n_head=4,
            n_positions=512,
            bos_token_id=2,
            eos_token_id=5,
            pad_token_id=0,
        )
    if family == "lfm2":
        kinds = ["conv" if i % 2 == 0 else "full_attention" for i in range(n_layers)]
        return T.Lfm2Config(**common, layer_types=kinds)
    raise UserError(f"unknown tiny model family {family!r}; valid: {', '.join(FAMILIES)}")


def tiny_model(
    family: str = "llama",
    *,
    n_layers: int = 4,
    hidden: int = 32,
    seed: int = 0,
    device: str = "cpu",
    sliding_window: int | None = None,
) -> LoadedModel:
    """A randomly initialised model of ``family`` with a character tokenizer, in fp32 (on CPU by default): the
    fixture for tests and demos that need no download.

    Args:
        family: one of ``steerlab.models.FAMILIES`` (llama, qwen2, qwen3, mistral, gemma2, gemma3, gpt2, lfm2).
        n_layers: decoder layers.
        hidden: hidden size.
        seed: the weights' seed.
        device: where to put it.
        sliding_window: the attention window of mistral, gemma2 and gemma3 (a small one exercises it).

    Returns:
        The model as a ``LoadedModel``.
    """
    from transformers import AutoModelForCausalLM

    tok = char_tokenizer()
    cfg = tiny_config(family, len(tok), n_layers=n_layers, hidden=hidden, sliding_window=sliding_window)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).to(device=device, dtype=torch.float32)
    return wrap_model(model, tok, name=f"tiny-{family}")
