"""A shared prompt prefix kept once in the KV cache, not once per row.

Why: on the embedded model the system prompt and few-shot turns are ~230 of a row's ~260 prompt tokens. Copied into
every row of a batch of 64 they were ~700 MB of cache, and every decode step re-read them from each row and
re-concatenated the whole cache (``torch.cat`` took a third of a decode step's time, attention a fifth). Here each
layer's cache holds the rows' own tokens only, in a buffer that grows in place (a decode step writes one column),
and attention takes the prefix's keys and values from one copy: the softmax runs over ``[prefix | row]`` exactly as
before, the prefix part as one matrix product for all rows.

How it plugs into transformers: the model's attention implementation is swapped for one that does the above when
the keys it is given carry a shared prefix (``RowsLayer.update`` attaches it) and calls the original
implementation (``sdpa`` or ``eager``) otherwise, so every other forward is unchanged. The 2-D attention mask, the
cache length and the mask transformers builds cover the rows' own tokens; position ids are passed explicitly
(prefix length + offset), so rotary and learned positions are those of the whole sequence.
"""

from __future__ import annotations

import sys

import torch

_PREFIX_ATTR = "_steerlab_prefix"
_PACK_ATTR = "_steerlab_packing"  # a packed forward's layout (``steerlab.models.packed``)
_BASES = ("sdpa", "eager")
_NAME = "steerlab_prefix_{}"
_SDPA_GQA = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 5)  # enable_gqa came in torch 2.5


def _name(base: str) -> str:
    return _NAME.format(base)


def install(model: torch.nn.Module) -> bool:
    """Swap ``model``'s attention for the prefix-aware one (idempotent); False where it cannot be used (another
    attention implementation, attention sinks, conv layers)."""
    cfg = getattr(model, "config", None)
    impl = getattr(cfg, "_attn_implementation", None)
    if impl in {_name(b) for b in _BASES}:
        return True
    if (
        impl not in _BASES
        or getattr(cfg, "layer_types", None)
        and any("conv" in str(t) or "linear" in str(t) for t in cfg.layer_types)
    ):
        return False
    if getattr(cfg, "model_type", "") in ("gpt_oss",):  # attention sinks are not part of the split softmax
        return False
    _register(impl)
    cfg._attn_implementation = _name(impl)
    return True


_REGISTERED: set[str] = set()


def _register(base: str) -> None:
    if base in _REGISTERED:
        return
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import AttentionInterface

    def attention(
        module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *a, **kw
    ):  # noqa: ANN002, ANN003, ANN202
        prefix = getattr(key, _PREFIX_ATTR, None)
        if prefix is None:
            return _base_fn(base, module)(module, query, key, value, *a, **kw)
        return prefix_attention(module, query, key, value, prefix, *a, **kw)

    AttentionInterface.register(_name(base), attention)
    AttentionMaskInterface.register(_name(base), ALL_MASK_ATTENTION_FUNCTIONS[base])
    _REGISTERED.add(base)


def _base_fn(base: str, module: torch.nn.Module):  # noqa: ANN202
    if base == "eager":  # each model file has its own eager attention (softcapping, sinks, ...)
        return sys.modules[type(module).__module__].eager_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[base]


def prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    softcap: float | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """softmax([q·K_prefix | q·K_row] + mask) · [V_prefix | V_row] for ``query`` [B, Hq, T, D], the rows' own
    ``key``/``value`` [B, Hkv, S, D] and the prefix's [1, Hkv, P, D]; returns [B, T, Hq, D] like transformers'
    attention functions. Every query sees the whole prefix (it precedes every row and has no padding); the row part
    is masked by ``attention_mask`` (boolean keep-mask or additive, [B, 1, T, S]; None: causal)."""
    if dropout and module.training:
        raise ValueError("a shared-prefix cache is for inference; attention dropout is not supported with it")
    if kwargs.get("s_aux") is not None:
        raise ValueError("attention sinks are not supported with a shared-prefix cache")
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    pack = getattr(key, _PACK_ATTR, None)
    if pack is not None:  # running rows' next tokens and new rows' prompts in one forward (``models.packed``)
        return pack.attention(query, key, value, prefix, scale, softcap), None
    if query.shape[2] > 1 and softcap is None:
        return prompt_attention(query, key, value, prefix, attention_mask, scale), None
    return split_attention(query, key, value, prefix, attention_mask, scale, softcap), None


def _causal_keep(t: int, s: int, device: torch.device) -> torch.Tensor:
    """[t, s] keep-mask, causal over a row part of s keys whose queries are its last t positions."""
    return torch.ones(t, s, dtype=torch.bool, device=device).tril(s - t)


def split_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    attention_mask: torch.Tensor | None,
    scale: float,
    softcap: float | None = None,
) -> torch.Tensor:
    """The split softmax: the prefix part as one product for all rows, never copied (decode steps, softcapping)."""
    pk, pv = prefix
    bsz, hq, t, d = query.shape
    hkv, s, p = key.shape[1], key.shape[2], pk.shape[2]
    g = hq // hkv
    q = query.reshape(bsz, hkv, g * t, d)  # query head h uses key head h // g (transformers' repeat_kv order)
    # the prefix part: one product per key head for all rows at once
    sp = torch.matmul(q.transpose(0, 1).reshape(hkv, bsz * g * t, d), pk[0].transpose(-1, -2))
    sp = sp.reshape(hkv, bsz, g * t, p).transpose(0, 1)
    sr = torch.matmul(q, key.transpose(-1, -2))
    scores = torch.cat([sp, sr], dim=-1).float() * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    row = scores[..., p:]
    if attention_mask is None:
        if t > 1:
            row.masked_fill_(~_causal_keep(t, s, query.device).repeat(g, 1), float("-inf"))
    else:
        m = attention_mask[..., -s:]  # [B or 1, 1 or Hq, T, S]
        m = m.unsqueeze(2) if m.shape[1] == 1 else m.reshape(m.shape[0], hkv, g, t, s)
        m = m.expand(bsz, hkv, g, t, s).reshape(bsz, hkv, g * t, s)
        if m.dtype == torch.bool:
            row.masked_fill_(~m, float("-inf"))
        else:
            row.add_(m.float())
    probs = torch.softmax(scores, dim=-1).to(value.dtype)
    out = torch.matmul(probs[..., p:], value)
    pp = probs[..., :p].transpose(0, 1).reshape(hkv, bsz * g * t, p)
    out = out + torch.matmul(pp, pv[0]).reshape(hkv, bsz, g * t, d).transpose(0, 1)
    return out.reshape(bsz, hq, t, d).transpose(1, 2).contiguous()


def prompt_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    attention_mask: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """The same attention for a prompt chunk (many queries per row): the prefix copied in front of each row's keys
    for this layer's call only, and one fused ``scaled_dot_product_attention``. With hundreds of queries per row the
    split softmax above spent most of its time in score matrices, their softmax and copies (3.56x slower on CPU for
    32 rows of 200 tokens after a 275-token prefix: benchmarks/bench_batching.py); for one query per row (a decode step) the split one is faster,
    as it never copies the prefix."""
    pk, pv = prefix
    bsz, hq, t, _ = query.shape
    hkv, s, p = key.shape[1], key.shape[2], pk.shape[2]
    k = torch.cat([pk.expand(bsz, -1, -1, -1).to(key.dtype), key], dim=2)
    v = torch.cat([pv.expand(bsz, -1, -1, -1).to(value.dtype), value], dim=2)
    gqa = {}
    if hq != hkv:  # query head h uses key head h // g (transformers' repeat_kv order)
        if _SDPA_GQA:
            gqa = {"enable_gqa": True}
        else:
            k, v = k.repeat_interleave(hq // hkv, dim=1), v.repeat_interleave(hq // hkv, dim=1)
    if attention_mask is None:
        row = _causal_keep(t, s, query.device)[None, None]
    else:
        row = attention_mask[..., -s:]
        if row.dtype != torch.bool:
            row = row.to(query.dtype)
    head = (torch.ones if row.dtype == torch.bool else torch.zeros)(
        *row.shape[:-1], p, dtype=row.dtype, device=row.device
    )
    mask = torch.cat([head, row], dim=-1)
    out = torch.nn.functional.scaled_dot_product_attention(query, k, v, attn_mask=mask, scale=scale, **gqa)
    return out.transpose(1, 2).contiguous()


def _adopt(state: tuple, t: torch.Tensor | None) -> tuple:
    """(buffer, length) after ``layer.keys = t``: a view of the buffer's first columns keeps the buffer (restoring a
    context), anything else becomes the buffer."""
    buf = state[0]
    if t is None:
        return (None, 0)
    if (
        buf is not None
        and t.dim() == 4
        and buf.dim() == 4
        and t.data_ptr() == buf.data_ptr()
        and t.shape[:2] == buf.shape[:2]
        and t.shape[3] == buf.shape[3]
        and t.stride() == buf.stride()
        and t.shape[2] <= buf.shape[2]
    ):
        return (buf, t.shape[2])
    return (t, t.shape[2] if t.dim() == 4 else 0)


def _append(state: tuple, new: torch.Tensor) -> tuple:
    buf, n = state
    m = new.shape[2]
    if buf is None or buf.dim() != 4 or buf.shape[0] != new.shape[0] or buf.shape[2] < n + m:
        cap = max(n + m + 64, (n + m) * 3 // 2)
        grown = new.new_empty(new.shape[0], new.shape[1], cap, new.shape[3])
        if n:
            grown[:, :, :n] = buf[:, :, :n]
        buf = grown
    buf[:, :, n : n + m] = new
    return (buf, n + m)


def _layer_class():  # noqa: ANN202
    from transformers.cache_utils import DynamicLayer

    class RowsLayer(DynamicLayer):
        """One layer's cache after a shared prefix: the rows' own keys and values (grown in place) and the prefix's,
        kept once and handed to attention with the keys."""

        def __init__(self, prefix_keys: torch.Tensor, prefix_values: torch.Tensor, keep: bool = True) -> None:
            self._k: tuple = (None, 0)
            self._v: tuple = (None, 0)
            super().__init__()
            self.prefix, self.keep = (prefix_keys, prefix_values), keep
            self.pack = None  # set for one packed forward (``steerlab.models.packed``)

        @property
        def keys(self) -> torch.Tensor | None:
            buf, n = self._k
            return buf if buf is None or buf.dim() != 4 else buf[:, :, :n]

        @keys.setter
        def keys(self, t: torch.Tensor | None) -> None:
            self._k = _adopt(self._k, t)

        @property
        def values(self) -> torch.Tensor | None:
            buf, n = self._v
            return buf if buf is None or buf.dim() != 4 else buf[:, :, :n]

        @values.setter
        def values(self, t: torch.Tensor | None) -> None:
            self._v = _adopt(self._v, t)

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
            if not self.is_initialized:
                self.device = key_states.device
                self.is_initialized = True
            if not self.keep:  # one forward, nothing after it: attend, store nothing
                keys = key_states.view_as(key_states)
                setattr(keys, _PREFIX_ATTR, self.prefix)
                return keys, value_states
            if self.pack is not None:  # a ``models.packed.Packing``: its layout decides where each token goes
                self._k = self.pack.write(self._k, key_states)
                self._v = self.pack.write(self._v, value_states)
            else:
                self._k = _append(self._k, key_states)
                self._v = _append(self._v, value_states)
            keys = self.keys
            setattr(keys, _PREFIX_ATTR, self.prefix)
            if self.pack is not None:
                setattr(keys, _PACK_ATTR, self.pack)
            return keys, self.values

    return RowsLayer


_ROWS_LAYER = None


def rows_layer_class() -> type:
    global _ROWS_LAYER
    if _ROWS_LAYER is None:
        _ROWS_LAYER = _layer_class()
    return _ROWS_LAYER


def rows_cache(prefix: object, keep: bool = True) -> object:
    """An empty cache for any number of rows after ``prefix`` (a one-row cache of the shared prefix); ``keep=False``
    for a single forward whose keys and values are not needed afterwards."""
    from transformers.cache_utils import DynamicCache

    cls = rows_layer_class()
    cache = DynamicCache()
    cache.layers = [cls(x.keys, x.values, keep) for x in prefix.layers]
    cache.shared_prefix_length = prefix.get_seq_length()
    return cache
