"""Safe local stand-ins for the four shipped tools, so an agent loop runs offline and no model output is executed.

- ``calculator``: the bounded arithmetic evaluator (``steerlab.tools.safe_eval``).
- ``web_search``: a fixed index; the entry sharing the most content words with the query (at least two) gives its
  snippet, else "no results".
- ``translator``: a fixed phrasebook (normalised text + target language -> translation), else "no translation
  available".
- ``python_interpreter``: no code is run. Only a single ``print(<arithmetic>)`` is evaluated, through the same
  arithmetic evaluator, where ``len('literal')`` counts as a number; anything else answers "execution is disabled
  here". That covers the benchmark's code tasks without a sandbox.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..tools.safe_eval import safe_arith_eval

NO_RESULTS = "no results"
NO_TRANSLATION = "no translation available"
NO_EXECUTION = "execution is disabled here: this stand-in runs only print(<arithmetic>) (len('text') counts)"
# words that say nothing about which entry is meant
STOPWORDS = frozenset(
    "a an and are as at be by current currently did do does for from how in is it latest me now of on or "
    "right the this to today was what when where which who why will with".split()
)
LANGUAGE_CODES = {
    "fr": "french",
    "de": "german",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
}


def format_number(x: float) -> str:
    """A calculator's display: integral values without a decimal point, others to 10 significant digits."""
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.10g}"


def calculator(arguments: Mapping) -> str:
    """The value of ``arguments['expression']``, or ``error: ...`` saying why it cannot be computed."""
    expr = arguments.get("expression")
    try:
        return format_number(safe_arith_eval(expr))
    except ValueError as err:
        return f"error: {err}"


def _len_literals(node: ast.AST) -> ast.AST:
    """``len('literal')`` replaced by its value, so the arithmetic evaluator sees only numbers."""

    class Lens(ast.NodeTransformer):
        def visit_Call(self, call: ast.Call) -> ast.AST:
            if (
                isinstance(call.func, ast.Name)
                and call.func.id == "len"
                and len(call.args) == 1
                and not call.keywords
                and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)
            ):
                return ast.Constant(len(call.args[0].value))
            return call

    return Lens().visit(node)


def python_interpreter(arguments: Mapping) -> str:
    """What ``print(<arithmetic>)`` prints; no other code is run (see the module docstring)."""
    code = arguments.get("code")
    if not isinstance(code, str):
        return NO_EXECUTION
    try:
        tree = ast.parse(code.strip())
    except SyntaxError:
        return NO_EXECUTION
    body = tree.body
    if not (
        len(body) == 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Call)
        and isinstance(body[0].value.func, ast.Name)
        and body[0].value.func.id == "print"
        and len(body[0].value.args) == 1
        and not body[0].value.keywords
    ):
        return NO_EXECUTION
    expr = ast.unparse(_len_literals(body[0].value.args[0]))
    try:
        return format_number(safe_arith_eval(expr))
    except ValueError:
        return NO_EXECUTION


def normalize(text: str) -> str:
    """Lower case, accents kept, punctuation dropped, spaces collapsed (how phrasebook keys are compared)."""
    text = unicodedata.normalize("NFC", str(text)).lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def words(text: str) -> set[str]:
    return {w for w in normalize(text).split() if w not in STOPWORDS}


@dataclass
class StandIns:
    """The four tools over a fixed search index and phrasebook; ``run(name, arguments)`` answers like the tool."""

    index: Sequence[Mapping] = field(default_factory=list)  # {"title", "snippet"}
    phrasebook: Sequence[Mapping] = field(default_factory=list)  # {"text", "target_language", "translation"}
    min_overlap: int = 2

    def __post_init__(self) -> None:
        self._index = [(words(e["title"] + " " + e["snippet"]), e["snippet"]) for e in self.index]
        self._phrases = {
            (normalize(p["text"]), normalize(p["target_language"])): p["translation"] for p in self.phrasebook
        }

    @classmethod
    def shipped(cls) -> StandIns:
        """The index and phrasebook shipped with the agent tasks (``steerlab/data/agent``)."""
        return cls(_read_jsonl(_data() / "search_index.jsonl"), _read_jsonl(_data() / "phrasebook.jsonl"))

    def web_search(self, arguments: Mapping) -> str:
        query = words(str(arguments.get("query", "")))
        best, best_score = NO_RESULTS, self.min_overlap - 1
        for keys, snippet in self._index:
            score = len(query & keys)
            if score > best_score:  # ties: the first entry in index order
                best, best_score = snippet, score
        return best

    def translator(self, arguments: Mapping) -> str:
        lang = normalize(str(arguments.get("target_language", "")))
        lang = LANGUAGE_CODES.get(lang, lang)
        text = normalize(str(arguments.get("text", "")))
        return self._phrases.get((text, lang), NO_TRANSLATION)

    def run(self, name: str, arguments: Mapping | str) -> str:
        """The tool's reply to a call (``arguments`` a dict or its JSON text); an unknown tool or unreadable
        arguments give an ``error: ...`` reply, as a tool runtime would."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as err:
                return f"error: the arguments are not valid JSON ({err.msg})"
        if not isinstance(arguments, Mapping):
            return "error: the arguments must be a JSON object"
        tools = {
            "calculator": calculator,
            "python_interpreter": python_interpreter,
            "web_search": self.web_search,
            "translator": self.translator,
        }
        if name not in tools:
            return f"error: unknown tool {name!r}; available: {', '.join(tools)}"
        return tools[name](arguments)


def _data() -> Path:
    return Path(str(resources.files("steerlab.data") / "agent"))


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
