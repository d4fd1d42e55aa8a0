"""Schema-constrained decoding of a call, after its marker: a per-row logits rule backed by xgrammar.

Why xgrammar (measured on SmolLM2-135M, 32 VALID tool prompts, the call prefilled; see the README): per-row
schemas are cheap (a compiled grammar per tool, a light matcher per row), the mask costs 0.5-0.7 ms per row and
token against a 100-300 ms forward on CPU, and it gave the highest valid-call rate (0.91 with the router's tool)
beside llguidance (0.81; 8 MB, no dependencies) and outlines-core (0.91, but 9-13 ms per token and a vocabulary that
must be built by hand offline). Install it without triton, which its CPU path does not use:
``pip install --no-deps xgrammar apache-tvm-ffi``.

A row is constrained from the moment its reply is exactly the call marker (a prefilled marker, or one the model
wrote token by token): its JSON body must match ``{"name": <tool>, "arguments": <that tool's schema>}``, with the
tool from the router's domain or any tool (the model picks); when the JSON is complete the closer is forced.
String arguments get a pattern that keeps them from swallowing the closer or running on (``string_pattern``).
"""

from __future__ import annotations

import copy
import json
import weakref
from collections.abc import Callable, Sequence

import torch

from ..generation.rules import force_tokens
from ..tools import format_spec, schema_constrained_formats, tool_spec

DEFAULT_STRING_PATTERN = "^[^<}]{1,100}$"


def available() -> bool:
    try:
        import xgrammar  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> object:
    try:
        import xgrammar
    except ImportError:
        raise ImportError(
            "constrained decoding needs xgrammar: pip install --no-deps xgrammar apache-tvm-ffi "
            "(scripts/setup.sh installs it)"
        ) from None
    return xgrammar


def _strings(schema: object, pattern: str | None) -> object:
    """A copy of a JSON schema with ``pattern`` on every string that has none (xgrammar ignores maxLength when a
    pattern is set, so the length bound lives in the pattern)."""
    if isinstance(schema, dict):
        out = {k: _strings(v, pattern) for k, v in schema.items()}
        if pattern and out.get("type") == "string" and "pattern" not in out and "enum" not in out:
            out["pattern"] = pattern
        return out
    if isinstance(schema, list):
        return [_strings(x, pattern) for x in schema]
    return schema


def call_schema(
    tools: Sequence[dict], names: Sequence[str] | None = None, string_pattern: str | None = None
) -> dict:
    """The JSON schema of one call ``{"name", "arguments"}`` to one of ``names`` (all tools when None)."""
    alts = []
    for t in tools:
        spec = tool_spec(t)
        if names is not None and spec["name"] not in names:
            continue
        params = copy.deepcopy(spec.get("parameters") or {"type": "object", "properties": {}})
        params.setdefault("type", "object")
        params["additionalProperties"] = False
        alts.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": spec["name"]},
                    "arguments": _strings(params, string_pattern),
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    if not alts:
        raise ValueError(f"no tool named {list(names or [])} among {[tool_spec(t)['name'] for t in tools]}")
    return alts[0] if len(alts) == 1 else {"anyOf": alts}


GRAMMAR_CACHE_BYTES = 64 * 2**20  # compiled grammars kept per tokenizer, across batches and requests
_COMPILERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def shared_compiler(tokenizer: object, vocab_size: int) -> object:
    """One xgrammar compiler per tokenizer and vocabulary size, kept while the tokenizer lives.

    Building the tokenizer's info costs ~0.4 s and compiling a call schema ~0.8 s on a 2-core CPU (SmolLM2); a
    compiler per batch paid both on every server request. The shared compiler keeps compiled grammars in its own
    cache, bounded by ``GRAMMAR_CACHE_BYTES`` so a server offered ever new tool lists stays flat in memory."""
    xgr = require()
    per = _COMPILERS.setdefault(tokenizer, {})
    if vocab_size not in per:
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        per[vocab_size] = xgr.GrammarCompiler(info, cache_limit_bytes=GRAMMAR_CACHE_BYTES)
    return per[vocab_size]


class CallGrammar:
    """A logits rule: rows whose reply is exactly the marker so far decode a schema-valid call, then the closer.

    ``tools`` is the tool list, or ``tools(prompt_index)`` a list per row (BFCL items each offer their own);
    ``tool_of(prompt_index)`` names the row's tool (None: any of its tools); ``applies(prompt_index)`` (default:
    every row) says whether the row is constrained at all. A schema the grammar compiler cannot
    take leaves that row unconstrained (``unconstrained``). Only formats whose body is one JSON call between marker
    and closer (``ToolCallFormat.schema_constrained``: ``tool_call_json``) are supported.
    """

    def __init__(
        self,
        tokenizer: object,
        vocab_size: int,
        tools: Sequence[dict] | Callable[[int], Sequence[dict]],
        tool_of: Callable[[int], str | None],
        fmt: str = "tool_call_json",
        string_pattern: str | None = DEFAULT_STRING_PATTERN,
        applies: Callable[[int], bool] | None = None,
    ) -> None:
        spec = format_spec(fmt)
        if not spec.schema_constrained:
            raise ValueError(
                f"constrained decoding needs a format with one JSON call between marker and closer "
                f"({', '.join(schema_constrained_formats())}), got {fmt!r}"
            )
        xgr = require()
        self.xgr, self.tokenizer, self.vocab = xgr, tokenizer, vocab_size
        self.tools_of = tools if callable(tools) else (lambda i, t=list(tools): t)
        self.tool_of, self.pattern = tool_of, string_pattern
        self.applies = applies or (lambda i: True)
        self.unconstrained: set[int] = set()
        self.marker, self.closer = spec.marker, spec.closer
        self.closer_ids = tokenizer(self.closer, add_special_tokens=False)["input_ids"]
        self._compiler = shared_compiler(tokenizer, vocab_size)
        self._compiled: dict[str | None, object] = {}
        self._rows: dict[int, dict] = {}  # prompt index -> {"matcher", "start", "fed", "done_at"}

    def _grammar(self, i: int) -> object | None:
        tool = self.tool_of(i)
        schema = json.dumps(
            call_schema(self.tools_of(i), None if tool is None else [tool], self.pattern), sort_keys=True
        )
        if schema not in self._compiled:
            try:
                self._compiled[schema] = self._compiler.compile_json_schema(
                    schema, any_whitespace=False, separators=(", ", ": ")
                )
            except (RuntimeError, ValueError):  # a schema feature the compiler does not take
                self._compiled[schema] = None
        return self._compiled[schema]

    def _state(self, i: int, gen: Sequence[int]) -> dict | None:
        st = self._rows.get(i)
        if st is None:
            if i in self.unconstrained or not self.applies(i):
                return None
            if self.tokenizer.decode(list(gen), skip_special_tokens=False).strip() != self.marker:
                return None
            grammar = self._grammar(i)
            if grammar is None:
                self.unconstrained.add(i)
                return None
            st = self._rows[i] = {"matcher": self.xgr.GrammarMatcher(grammar), "fed": len(gen)}
        return st

    def _feed(self, st: dict, gen: Sequence[int]) -> None:
        """Give the matcher the tokens chosen since it last saw the row; note where the call became complete."""
        m = st["matcher"]
        for k, t in enumerate(list(gen)[st["fed"] :], start=st["fed"] + 1):
            if "done_at" not in st:
                m.accept_token(int(t))
                if m.is_completed():
                    st["done_at"] = k
        st["fed"] = len(gen)

    def fixed_tail(self, i: int, gen: Sequence[int]) -> list[int] | None:
        """Once a row's call is complete, the rest is the closer: decoding appends it without a forward per token."""
        st = self._state(i, gen)
        if st is None:
            return None
        self._feed(st, gen)
        if "done_at" not in st:
            return None
        k = len(gen) - st["done_at"]
        return [int(x) for x in self.closer_ids[k:]] if k < len(self.closer_ids) else None

    def __call__(
        self, rows: Sequence[int], gen: Sequence[Sequence[int]], logits: torch.Tensor
    ) -> torch.Tensor:
        todo = []
        for j, i in enumerate(rows):
            st = self._state(i, gen[j])
            if st is None:
                continue
            self._feed(st, gen[j])
            if "done_at" in st:  # the call is complete: close it
                k = len(gen[j]) - st["done_at"]
                if k < len(self.closer_ids):
                    force_tokens(logits, j, int(self.closer_ids[k]))
            else:
                todo.append(j)
        if todo:
            mask = self.xgr.allocate_token_bitmask(len(todo), self.vocab)
            for r, j in enumerate(todo):
                self._state(rows[j], gen[j])["matcher"].fill_next_token_bitmask(mask, r)
            sub = logits[todo].float().cpu()
            view = sub[:, : self.vocab].contiguous()  # the grammar's vocabulary (the model's may be padded)
            self.xgr.apply_token_bitmask_inplace(view, mask)
            sub[:, : self.vocab] = view
            sub[:, self.vocab :] = float("-inf")
            logits[todo] = sub.to(logits.device, logits.dtype)
        return logits
