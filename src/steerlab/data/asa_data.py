"""The shipped ASA dataset (tool vs non-tool prompts in four domains) and loaders for a user's own data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..base import DataError, read_user_text

ASA_SPLITS = ("cal", "train", "valid", "test")
ASA_DOMAINS = ("code", "math", "search", "translation")


@dataclass(frozen=True)
class AsaExample:
    """One prompt (or conversation) and whether its next reply should call the domain's tool.

    ``messages`` (optional): a conversation in OpenAI's shape (user, assistant with ``tool_calls``, ``tool``
    results) whose next reply is labelled; ``prompt`` is then its first user message. For a conversation that ends
    in a tool result, label 1 means a further call is needed now (``domain``: that call's tool), label 0 that the
    answer is due (``domain``: the tool whose result came back)."""

    id: str
    prompt: str
    domain: str
    label: int  # 1: the request needs the domain's tool, 0: answerable directly
    split: str = ""
    messages: tuple = ()

    @property
    def kind(self) -> str:
        """``single`` (one user prompt) or ``conversation`` (a conversation with earlier turns)."""
        return "conversation" if len(self.messages) > 1 else "single"

    @property
    def conversation(self) -> str | list[dict]:
        """What the prompt builder renders: the user prompt, or the conversation."""
        return list(self.messages) if self.messages else self.prompt


def _files() -> Path:
    return Path(str(resources.files("steerlab.data") / "asa"))


def load_asa_split(split: str, conversations: bool = True) -> list[AsaExample]:
    """A split's single-turn prompts, then (``conversations``) its conversations that end in a tool result
    (``conversations.jsonl``; see the data README)."""
    if split not in ASA_SPLITS:
        raise DataError(f"unknown ASA split {split!r}; valid: {', '.join(ASA_SPLITS)}")
    out = load_jsonl_examples(_files() / f"{split}.jsonl")
    if conversations:
        out += [e for e in load_jsonl_examples(_files() / "conversations.jsonl") if e.split == split]
    return out


def load_asa_tools() -> list[dict]:
    return json.loads((_files() / "tools.json").read_text())


ROLES = ("system", "user", "assistant", "tool")


def _check_messages(where: str, messages: object) -> str:
    """A conversation's first user prompt; a bad conversation fails naming the message and what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
    first_user = None
    for k, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise DataError(f"{where}: messages[{k}] needs a role among {', '.join(ROLES)}, got {m!r:.80}")
        if m["role"] == "assistant" and m.get("tool_calls"):
            for c in m["tool_calls"]:
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise DataError(
                        f"{where}: messages[{k}].tool_calls needs {{function: {{name, arguments}}}}"
                    )
        elif not isinstance(m.get("content"), str):
            raise DataError(f"{where}: messages[{k}].content must be a string")
        if m["role"] == "user" and first_user is None:
            first_user = m["content"]
    if messages[-1]["role"] not in ("user", "tool"):
        raise DataError(
            f"{where}: a conversation must end with a user or tool message (the reply is labelled)"
        )
    if first_user is None:
        raise DataError(f"{where}: messages hold no user message")
    return first_user


def load_jsonl_examples(path: str | Path) -> list[AsaExample]:
    """A JSONL of {prompt or messages, domain, label[, id, split]}; a bad line fails with its number and what is
    wrong."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    out = []
    for n, line in enumerate(read_user_text(path, "a JSONL file of prompts").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{n}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: each line must be a JSON object")
        missing = [k for k in ("domain", "label") if k not in row]
        if "prompt" not in row and "messages" not in row:
            missing.insert(0, "prompt")
        if missing:
            raise DataError(
                f"{path}:{n}: missing field(s) {missing}; each line needs prompt (or messages), domain, label"
            )
        if row["label"] not in (0, 1):
            raise DataError(f"{path}:{n}: label must be 0 or 1, got {row['label']!r}")
        messages: tuple = ()
        if "messages" in row:
            first = _check_messages(f"{path}:{n}", row["messages"])
            row.setdefault("prompt", first)
            messages = tuple(row["messages"])
        if not isinstance(row["prompt"], str) or not row["prompt"].strip():
            raise DataError(f"{path}:{n}: prompt must be a non-empty string")
        split = str(row.get("split", ""))
        if split and split not in ASA_SPLITS:
            raise DataError(f"{path}:{n}: split {split!r} is not one of {', '.join(ASA_SPLITS)}")
        out.append(
            AsaExample(
                str(row.get("id", f"{path.stem}-{n}")),
                row["prompt"],
                str(row["domain"]),
                row["label"],
                split,
                messages,
            )
        )
    if not out:
        raise DataError(f"{path} holds no examples")
    return out


def load_alpaca_examples(
    name: str = "tatsu-lab/alpaca", split: str = "train", limit: int = 400, domain: str = "general"
) -> list[AsaExample]:
    """Non-tool examples from an Alpaca-style dataset on the hub (online users; needs `datasets`)."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            "loading Alpaca-style data needs the `datasets` package: pip install 'steerlab[data]'"
        ) from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as err:  # offline, unknown name, ...
        raise DataError(
            f"could not load {name!r} from the hub ({type(err).__name__}: {err}); "
            "offline users can pass their own JSONL"
        ) from None
    out = []
    for i, row in enumerate(ds):
        text = (row.get("instruction", "") + ("\n" + row["input"] if row.get("input") else "")).strip()
        if text:
            out.append(AsaExample(f"alpaca-{i}", text, domain, 0))
        if len(out) >= limit:
            break
    return out
