"""What steerlab relies on from transformers, each checked by name, so that an upstream change fails here with a
clear message (scripts/test_latest.sh runs these on the newest releases) instead of as steering at wrong positions.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from steerlab.models import FAMILIES, base_model
from steerlab.models.hf_compat import cache_kwargs, forward_cache, output_cache
from steerlab.models.phase import cache_length
from steerlab.versions import TESTED, untested

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_takes_and_returns_the_kv_cache_under_the_name_steerlab_uses(tiny_models, family):
    lm = tiny_models(family)
    ids = torch.tensor([[5, 6, 7, 8]])
    out = lm.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    cache = output_cache(out)
    assert cache is not None, "the model output carries no KV cache under 'cache' or 'past_key_values'"
    assert cache_length(cache) == 4
    nxt = torch.tensor([[9]])
    out2 = lm.model(
        input_ids=nxt,
        attention_mask=torch.ones(1, 5, dtype=torch.long),
        use_cache=True,
        **cache_kwargs(lm.model, cache),
    )
    assert cache_length(output_cache(out2)) == 5
    # the cached step equals the uncached forward at the last position
    full = lm.model(input_ids=torch.cat([ids, nxt], 1), use_cache=False).logits[:, -1]
    torch.testing.assert_close(out2.logits[:, -1], full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_hands_the_growing_kv_cache_to_the_decoder_stack(tiny_models, family):
    """Phase tracking reads the cache length in a pre-hook on the decoder stack: during ``model.generate`` every
    step after the first must show the cache it extends (this broke with transformers 5.24's rename)."""
    lm = tiny_models(family)
    seen: list[tuple[int, int]] = []

    def pre(_mod, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        ref = ids if ids is not None else kwargs.get("inputs_embeds")
        seen.append((int(ref.shape[1]), cache_length(forward_cache(kwargs))))

    h = base_model(lm.model, lm.arch).register_forward_pre_hook(pre, with_kwargs=True)
    try:
        ids = torch.tensor([[5, 6, 7, 8, 9]])
        lm.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
        )
    finally:
        h.remove()
    assert seen[0] == (5, 0), f"first forward should be the 5-token prompt with an empty cache, got {seen[0]}"
    steps = seen[1:]
    assert len(steps) == 3
    assert [s for s, _ in steps] == [1, 1, 1]
    assert [past for _, past in steps] == [5, 6, 7], f"decode steps did not see the cache: {steps}"


def test_tested_range_holds_the_pinned_transformers():
    pins = dict(
        re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    lo, hi = TESTED["transformers"]
    assert untested({"transformers": pins["transformers"]}) == [], (
        f"constraints.txt pins transformers {pins['transformers']}, outside steerlab.versions.TESTED {lo}..{hi}"
    )


def test_untested_versions_are_named():
    lo, hi = TESTED["transformers"]
    assert untested({"transformers": lo}) == [] and untested({"transformers": hi}) == []
    (line,) = untested({"transformers": "99.0.0"})
    assert "transformers 99.0.0" in line and lo in line and hi in line
    (line,) = untested({"transformers": "4.57.1"})
    assert "4.57.1" in line
