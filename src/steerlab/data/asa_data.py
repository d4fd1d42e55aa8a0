"""The shipped ASA dataset (tool vs non-tool prompts in four domains) and loaders for a user's own data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

ASA_SPLITS = ("cal", "train", "valid", "test")
ASA_DOMAINS = ("code", "math", "search", "translation")


@dataclass(frozen=True)
class AsaExample:
    id: str
    prompt: str
    domain: str
    label: int  # 1: the request needs the domain's tool, 0: answerable directly
    split: str = ""


def _files() -> Path:
    return Path(str(resources.files("steerlab.data") / "asa"))


def load_asa_split(split: str) -> list[AsaExample]:
    if split not in ASA_SPLITS:
        raise ValueError(f"unknown ASA split {split!r}; valid: {', '.join(ASA_SPLITS)}")
    return load_jsonl_examples(_files() / f"{split}.jsonl")


def load_asa_tools() -> list[dict]:
    return json.loads((_files() / "tools.json").read_text())


def load_jsonl_examples(path: str | Path) -> list[AsaExample]:
    """A JSONL of {prompt, domain, label[, id]}; a bad line fails with its number and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    out = []
    from ..config import read_user_text

    for n, line in enumerate(read_user_text(path, "a JSONL file of prompts").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not valid JSON ({err.msg})") from None
        missing = [k for k in ("prompt", "domain", "label") if k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: missing field(s) {missing}; each line needs prompt, domain, label")
        if row["label"] not in (0, 1):
            raise ValueError(f"{path}:{n}: label must be 0 or 1, got {row['label']!r}")
        if not isinstance(row["prompt"], str) or not row["prompt"].strip():
            raise ValueError(f"{path}:{n}: prompt must be a non-empty string")
        split = str(row.get("split", ""))
        if split and split not in ASA_SPLITS:
            raise ValueError(f"{path}:{n}: split {split!r} is not one of {', '.join(ASA_SPLITS)}")
        out.append(
            AsaExample(
                str(row.get("id", f"{path.stem}-{n}")), row["prompt"], str(row["domain"]), row["label"], split
            )
        )
    if not out:
        raise ValueError(f"{path} holds no examples")
    return out


def load_alpaca_examples(
    name: str = "tatsu-lab/alpaca", split: str = "train", limit: int = 400, domain: str = "general"
) -> list[AsaExample]:
    """Non-tool examples from an Alpaca-style dataset on the hub (online users; needs `datasets`)."""
    try:
        import datasets
    except ImportError:
        raise ValueError(
            "loading Alpaca-style data needs the `datasets` package: pip install 'steerlab[data]'"
        ) from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as err:  # offline, unknown name, ...
        raise ValueError(
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
