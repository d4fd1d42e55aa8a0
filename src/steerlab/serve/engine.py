"""The one adapter between serving (HTTP server, web app) and steerlab's core: prompts, ASA, steering, generation.

Everything the server and the web app's chat side need from ``steerlab.asa``, ``steerlab.steering`` and
``steerlab.generation`` goes through this module, so that a change of those APIs is fixed here and nowhere else
(the web app's steering-vector lab, ``steerlab.ui.lab``, uses the engine's model and lock). What a call looks like
is the call format's business (``steerlab.tools.formats``): the engine asks it for the prefill of a forced call and
for the stop rule, and names no marker. The contract: given a batch of rows (messages, tools, per-row options:
ASA on/off, strength and tau overrides, temperature, top_p, seed, max_tokens, stop strings), return for each its
generated text, why it stopped, and the gate decision (domain, p_tool, gate), with tokens streamed as they come.
``Running`` is the same as a batch that requests join between decode steps and leave as soon as they stop (the
server's continuous batching); ``run`` is one such batch fed all its rows at once.

What a row gets is the asset's ``OperatingPoint`` (``steerlab.asa.point``), the same object the evaluate stage
measured: its action when the gate opens (push, or the reply started with the call marker), the marker forbidden
when it closes, and the call decoded under the tool's schema. A per-request strength, tau or ``asa: false`` is a
changed point for that row (``point.replace``). ``tool_choice`` ``required`` or a named function starts the reply
with the marker whatever the gate, and the call is decoded under the offered (or named) tool's schema.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..assets import AssetError
from ..config import UserError
from ..models import LoadedModel


class InputTooLarge(ValueError):
    """The rendered prompt has more tokens than the server accepts (HTTP 413)."""


@dataclass
class RowSpec:
    """One request row, already validated by the protocol layer."""

    messages: list[dict]
    tools: list[dict] = field(default_factory=list)
    tool_choice: str = "auto"  # "none" | "auto" | "required" | "function"
    forced_name: str | None = None  # the function named by tool_choice={"type": "function", ...}
    asa: bool | None = None  # None: the server default (on when an asset is loaded)
    strength: float | None = None
    tau: float | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    stream: bool = True  # text deltas are emitted as they come; False: only the gate decision and the result


@dataclass
class GateInfo:
    """What ASA decided for one row and whether it was applied; all None when the gate was not consulted."""

    applied: bool = False
    domain: str | None = None
    p_tool: float | None = None
    gate: int | None = None
    strength: float | None = None
    tau: float | None = None
    layer: int | None = None
    note: str | None = None
    action: str | None = None  # what the operating point did to this row, in words

    def to_dict(self) -> dict:
        return {
            "asa": self.applied,
            "gate": self.gate,
            "p_tool": None if self.p_tool is None else round(self.p_tool, 6),
            "domain": self.domain,
            "strength": self.strength,
            "tau": self.tau,
            "layer": self.layer,
            "action": self.action,
            "note": self.note,
        }


@dataclass
class Prepared:
    """A row with its rendered prompt: the text the model sees and the reply text forced before generation."""

    spec: RowSpec
    prompt: str
    prefill: str
    prompt_tokens: int
    gate_note: str | None  # why the gate is not consulted for this row (None: it is)
    ids: list[int] = field(default_factory=list)
    head: tuple[int, ...] = ()  # token ids of the system prompt + few-shot turns (reused across requests)
    cancelled: threading.Event = field(default_factory=threading.Event)  # set when the client has gone


@dataclass
class RowOutput:
    text: str  # the whole assistant reply, prefill included
    finish: str  # "eos", "stop" (a stop rule fired), "length" or "cancelled" (the client left)
    prompt_tokens: int
    completion_tokens: int
    gate: GateInfo
    call_format: str
    stop_hit: str | None = None  # the request's stop string that ended the row, if any
    prefix_reused: int = 0  # prompt tokens whose KV cache came from an earlier request


# emit(row, kind, payload): kind "gate" (GateInfo), "delta" (str), "done" (RowOutput)
Emit = Callable[[int, str, object], None]


def _load_any(spec: str, device: str, dtype: str) -> LoadedModel:
    """A model by spec; ``tiny`` / ``tiny-<family>`` builds a small random model (tests, demos without weights)."""
    from ..models import FAMILIES, load_model, tiny_model

    if spec == "tiny" or spec.startswith("tiny-"):
        family = spec.split("-", 1)[1] if "-" in spec else "llama"
        if family not in FAMILIES:
            raise UserError(f"unknown tiny model family {family!r}; valid: {', '.join(FAMILIES)}")
        return tiny_model(family, device="cpu" if device == "auto" else device)
    return load_model(spec, device=device, dtype=dtype)


def asset_model(asset: str | Path) -> str:
    """The model an ASA asset was fitted on (its manifest's ``model``)."""
    path = Path(asset) / "manifest.json"
    if not path.is_file():
        raise AssetError(f"{asset} is not an asset directory (no manifest.json)")
    model = json.loads(path.read_text()).get("model")
    if not isinstance(model, str) or not model:
        raise AssetError(f"{path} names no model")
    return model


class Engine:
    """A loaded model, an optional ASA asset and the prompt conventions; thread-safe (one lock for the model)."""

    def __init__(
        self,
        lm: LoadedModel,
        asset: str | Path | None = None,
        *,
        call_format: str | None = None,
        few_shot: bool = True,
        template_tools: bool | None = None,
        max_prompt_tokens: int = 4096,
        prefix_cache_entries: int = 8,
        prefix_cache_mb: int = 256,
    ) -> None:
        from ..asa.prompt import DEFAULT_FEW_SHOT
        from ..generation.prefix_store import PrefixStore

        self.lm = lm
        # KV caches of recent system prompts + tool lists + few-shot turns, reused across requests
        self.prefixes = (
            PrefixStore(lm, prefix_cache_entries, prefix_cache_mb * 2**20) if prefix_cache_entries else None
        )
        self.steerer = None
        self.asset_name: str | None = None
        self.max_prompt_tokens = max_prompt_tokens
        # a request admitted while others decode goes through the model with their next step, where that is exact
        # (``DecodeStream(fuse=...)``); False prefills it on its own (benchmarks' A/B)
        self.fuse_prompts = True
        self.lock = threading.Lock()
        prompt: dict = {
            "call_format": call_format or "tool_call_json",
            "few_shot": list(DEFAULT_FEW_SHOT) if few_shot else [],
            "use_template_tools": bool(template_tools),
        }
        if asset is not None:
            from ..asa.runtime import AsaSteerer

            self.steerer = AsaSteerer(lm, asset)
            p = Path(asset).resolve()
            self.asset_name = f"{p.parent.name}/{p.name}" if p.name == "asset" else p.name
            prompt = dict(self.steerer.manifest["prompt"])
            if call_format is not None and call_format != prompt["call_format"]:
                raise UserError(
                    f"--call-format {call_format!r} differs from the asset's {prompt['call_format']!r}; "
                    "the gate was fitted on the asset's prompt, so leave it out"
                )
        self.call_format: str = prompt["call_format"]
        self.few_shot: list[dict] = prompt["few_shot"]
        self.template_tools: bool = bool(prompt["use_template_tools"])
        from ..asa.calls import available
        from ..tools import format_spec

        self.format = format_spec(self.call_format)
        self.point = None if self.steerer is None else self.steerer.point
        # a forced or triggered call is decoded under its schema where the format allows it (a JSON body)
        self.grammar = self.format.schema_constrained and available()

    @classmethod
    def load(
        cls,
        model: str | None,
        asset: str | Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        **kw,
    ) -> Engine:
        """Load the model (the asset's own model when none is named) and bind the asset to it."""
        spec = model or (asset_model(asset) if asset is not None else "smollm2-135m")
        return cls(_load_any(spec, device, dtype), asset, **kw)

    # ------------------------------------------------------------------ facts

    @property
    def model_id(self) -> str:
        return self.lm.name

    def describe(self) -> dict:
        """Model and asset facts for /v1/models and the UI."""
        out: dict = {"model": self.lm.name, "call_format": self.call_format, "asset": None}
        if self.steerer is not None:
            m = self.steerer.manifest
            out["asset"] = {
                "name": self.asset_name,
                "layer": m["layer"],
                "site": m["site"],
                "strength": m["strength"],
                "tau": m["tau"],
                "beta": m["beta"],
                "direction": self.point.direction,
                "action": self.point.action,
                "on_close": self.point.on_close,
                "constrain": self.point.constrain,
                "domains": list(m["domains"]),
            }
        return out

    @staticmethod
    def default_tools() -> list[dict]:
        """The tools of steerlab's ASA data (what the shipped assets were fitted with)."""
        from ..data.asa_data import load_asa_tools

        return load_asa_tools()

    # ------------------------------------------------------------------ prompts

    def render(self, spec: RowSpec) -> Prepared:
        """The prompt text for one row: the tool list, the call format and few-shot turns (the asset's prompt
        conventions) before the agent's own conversation; a forced call is prefilled."""
        from ..asa.prompt import PromptBuilder, render_conversation, shot_messages
        from ..models import render_prompt, tokenize_texts

        use_tools = bool(spec.tools) and spec.tool_choice != "none"
        template_tools = None
        if use_tools:
            pb = PromptBuilder(
                spec.tools,
                call_format=self.call_format,
                few_shot=self.few_shot,
                use_template_tools=self.template_tools,
            )
            msgs = pb.messages(spec.messages)
            n_head = 1 + sum(len(shot_messages(x)) for x in pb.shots())
            template_tools = spec.tools if self.template_tools else None
        else:
            systems, convo = render_conversation(spec.messages, self.call_format, self.template_tools)
            msgs = ([{"role": "system", "content": "\n\n".join(systems)}] if systems else []) + convo
            n_head = 1 if systems else 0
        prompt = render_prompt(self.lm.tokenizer, msgs, tools=template_tools)
        prefill = self._prefill(spec) if use_tools and not self.grammar else ""
        ids = tokenize_texts(self.lm.tokenizer, [prompt + prefill])[0]
        n = len(ids)
        if n > self.max_prompt_tokens:
            raise InputTooLarge(
                f"the rendered prompt has {n} tokens (with the tool list and few-shot turns, if any); "
                f"this server accepts at most {self.max_prompt_tokens} (--max-prompt-tokens)"
            )
        if self.steerer is None:
            note = "the server has no ASA asset"
        elif not use_tools:
            note = "no tools offered (tool_choice 'none' or no tools): the gate is not consulted"
        elif spec.tool_choice != "auto":
            note = (
                f"tool_choice {spec.tool_choice!r} forces a call by prefilling it: the gate is not consulted"
            )
        else:
            note = None
        return Prepared(
            spec, prompt + prefill, prefill, n, note, ids, self._head(msgs[:n_head], ids, template_tools)
        )

    def _head(self, msgs: list[dict], ids: list[int], tools: list[dict] | None) -> tuple[int, ...]:
        """Token ids of the rendered head (system prompt + few-shot turns), when they are a prefix of the row's."""
        from ..models import render_prompt, tokenize_texts

        if not msgs or self.prefixes is None:
            return ()
        try:
            text = render_prompt(self.lm.tokenizer, msgs, tools=tools, add_generation_prompt=False)
        except ValueError:
            return ()
        head = tokenize_texts(self.lm.tokenizer, [text])[0]
        n = len(head)
        return tuple(head) if 0 < n < len(ids) and ids[:n] == head else ()

    def _prefill(self, spec: RowSpec) -> str:
        """The start of the reply that forces a call: the format's marker, and the function's name when one is
        named."""
        if spec.tool_choice == "required":
            return self.format.prefill()
        if spec.tool_choice != "function":
            return ""
        return self.format.prefill(spec.forced_name)

    # ------------------------------------------------------------------ generation

    def _stop_rule(self, stops: Sequence[str], prefilled: bool) -> Callable[[str], bool]:
        """Stop once every call in the reply is closed and what follows is not another call (the format's rule),
        or at a stop string; plain text runs to EOS or max_tokens. ``prefilled``: the rows' replies began with
        the marker."""
        fmt = self.format

        def stop(text: str) -> bool:
            if prefilled:
                text = fmt.marker + text
            return any(s in text for s in stops) or fmt.calls_done(text)

        return stop

    def run(self, rows: list[Prepared], emit: Emit | None = None) -> list[RowOutput]:
        """Generate every row: they decode together where they can share steps (``Running``); each row's result
        in order."""
        out: list[RowOutput | None] = [None] * len(rows)

        def keep(i: int, kind: str, payload: object) -> None:
            if kind == "done":
                out[i] = payload  # type: ignore[assignment]
            if emit is not None:
                emit(i, kind, payload)

        running = self.running()
        waiting = list(range(len(rows)))
        while waiting or running:
            if waiting:
                waiting = running.admit([rows[i] for i in waiting], keep, waiting)
            running.step()
        return out  # type: ignore[return-value]

    def running(self) -> Running:
        """An empty running batch on this engine's model (the server keeps one and feeds it requests)."""
        return Running(self)

    def _forced(self, r: Prepared) -> str | None:
        """The call a row's ``tool_choice`` forces, decoded under its schema (None: none forced, or the textual
        prefill of formats without a JSON body does it)."""
        from ..asa.apply import ANY_TOOL

        spec = r.spec
        if not self.grammar or not spec.tools or spec.tool_choice in ("none", "auto"):
            return None
        return ANY_TOOL if spec.tool_choice == "required" else spec.forced_name

    def _row_point(self, r: Prepared) -> object | None:
        """The operating point for one row: the asset's, with the request's strength and tau; None when the gate is
        not consulted or ASA is off for the row."""
        if r.gate_note is not None or r.spec.asa is False:
            return None
        return self.point.replace(strength=r.spec.strength, tau=r.spec.tau)

    def _actions(self, rows: list[Prepared]) -> tuple[object | None, object | None]:
        """(row setup, logits rule) for a batch: the asset's operating point per row (a ``GatedAction``), or, with no
        asset, only the forced calls of ``tool_choice``."""
        from ..asa.apply import ANY_TOOL, call_rules
        from ..tools import tool_spec

        forced = [self._forced(r) for r in rows]
        offered = [{tool_spec(t)["name"] for t in r.spec.tools} for r in rows]

        def tools_of(i: int) -> list[dict]:
            return rows[i].spec.tools

        if self.steerer is not None:
            setup = self.steerer.steering(
                tools=tools_of,
                rows=[self._row_point(r) for r in rows],
                offered=lambda i: offered[i],
                forced=lambda i: forced[i],
            )
            return setup, None
        if not any(f is not None for f in forced):
            return None, None
        rule = call_rules(
            self.lm,
            self.call_format,
            opens=lambda i: forced[i] is not None,
            tools=tools_of,
            tool_of=lambda i: None if forced[i] in (None, ANY_TOOL) else forced[i],
            constrained=lambda i: forced[i] is not None,
        )
        return None, rule

    def _gate_info(self, i: int, r: Prepared, setup: object | None) -> GateInfo:
        """What the gate decided for row ``i`` and what the operating point did with it."""
        if r.gate_note is not None or setup is None or i not in setup.gate_of:
            return GateInfo(note=r.gate_note)
        g = setup.gate_of[i]
        rp = setup.point_of(i)
        on = rp is not None
        point = rp if on else self.point.replace(strength=r.spec.strength, tau=r.spec.tau)
        if not on:
            did = None
        elif g > 0:
            did = {
                "steer": "pushed toward a call",
                "prefill": "started the reply with the call marker",
                "steer+prefill": "pushed toward a call and started the reply with the call marker",
            }[point.action]
            if point.constrain != "none":
                did += "; the call decoded under its tool's schema"
        elif g < 0:
            did = {
                "forbid": "forbade the call marker",
                "push": "pushed away from a call",
                "none": "left the reply alone",
            }[point.on_close]
        else:
            did = "left the reply alone (gate 0)"
        return GateInfo(
            applied=on,
            domain=self.steerer.params.domains[setup.domain_of[i]],
            p_tool=setup.p_of[i],
            gate=g,
            strength=point.strength,
            tau=point.tau,
            layer=point.layer,
            note=None if on else "ASA turned off by the request (the gate is reported, not applied)",
            action=did,
        )

    def _rules(
        self, rows: list[Prepared], emit: Emit, ids: list[int], stops: tuple, prefilled: bool
    ) -> object:
        """The decoding rules of one group (rows sharing a stop rule): lengths, samplers, streaming, cancelling."""
        from ..generation.decode import DecodeRules, eos_ids
        from ..generation.sampling import RowSampler

        streams = [r.spec.stream for r in rows]

        def on_token(i: int, _tok: int, delta: str) -> None:
            if streams[i]:
                emit(ids[i], "delta", delta)

        specs = [r.spec for r in rows]
        return DecodeRules(
            eos_ids(self.lm),
            [s.max_tokens for s in specs],
            RowSampler(
                len(rows), [s.temperature for s in specs], [s.top_p for s in specs], [s.seed for s in specs]
            ),
            self._stop_rule(stops, prefilled),
            on_token if any(streams) else None,  # a reply read whole costs no event per token
            cancelled=lambda i: rows[i].cancelled.is_set(),
        )

    def _output(self, r: Prepared, g: object, gate: GateInfo) -> RowOutput:
        stops = r.spec.stop
        text = r.prefill + g.text
        hit = next((s for s in stops if s in text), None) if g.stopped_by == "stop" else None
        reused = len(r.head) if r.head and self.prefixes is not None else 0
        return RowOutput(
            text, g.stopped_by, r.prompt_tokens, len(g.token_ids), gate, self.call_format, hit, reused
        )


class Running:
    """Rows decoding together on one engine (continuous batching, ``steerlab.generation.stream``): requests join
    between decode steps and each leaves, its ``done`` emitted, as soon as it stops. Not thread-safe: one worker
    owns it (it takes the engine's lock per call)."""

    def __init__(self, engine: Engine) -> None:
        from ..generation.stream import DecodeStream

        self.engine = engine
        self.stream = DecodeStream(engine.lm, engine.prefixes, fuse=engine.fuse_prompts)
        self._rows: dict[int, tuple[Prepared, int, object, int, Emit]] = {}  # global index -> its row's facts

    @property
    def rows(self) -> int:
        """Rows decoding now."""
        return self.stream.rows

    def __bool__(self) -> bool:
        return bool(self.stream)

    @property
    def packed(self) -> int:
        """Rows so far whose prompts went through the running rows' step instead of a forward of their own."""
        return self.stream.packed_rows

    def admit(self, rows: list[Prepared], emit: Emit, ids: list[int]) -> list[int]:
        """Prefill rows and join them to the running ones (grouped by stop rule and shared head); ``ids[j]`` names
        row j in ``emit``. Returns the ids of the rows that must wait until the running rows are done."""
        groups: dict[tuple, list[int]] = {}
        for j, r in enumerate(rows):
            groups.setdefault((r.spec.stop, bool(r.prefill), r.head), []).append(j)
        waiting: list[int] = []
        with self.engine.lock:
            for (stops, prefilled, head), js in groups.items():
                group = [rows[j] for j in js]
                gids = [ids[j] for j in js]
                longest = max(r.spec.max_tokens for r in group)
                if not self.stream.can_take([r.ids for r in group], head or None, longest):
                    waiting += gids  # checked before the group's actions and grammar are built
                    continue
                setup, rule = self.engine._actions(group)
                rules = self.engine._rules(group, emit, gids, stops, prefilled).with_rule(rule)
                off = self.stream.admit([r.ids for r in group], rules, setup, head or None)
                if off is None:
                    waiting += gids
                    continue
                for k, (r, i) in enumerate(zip(group, gids)):
                    self._rows[off + k] = (r, i, setup, k, emit)
                    if r.prefill and r.spec.stream:
                        emit(i, "delta", r.prefill)
        return waiting

    def step(self) -> None:
        """One decode step for every running row; rows that stopped emit their gate decision and result."""
        with self.engine.lock:
            finished = self.stream.step()
        for gi, g in finished:
            r, i, setup, k, emit = self._rows.pop(gi)
            gate = self.engine._gate_info(k, r, setup)
            emit(i, "gate", gate)
            emit(i, "done", self.engine._output(r, g, gate))
