"""Multiple-choice items, their option shuffle (a seed per question, never one shared reseed), prompt format and
answer-letter tokens."""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from ..base import DataError, UserError, read_user_text

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class MCQItem:
    id: str
    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str = ""

    @property
    def gold_letter(self) -> str:
        return LETTERS[self.answer]


def _validate(row: dict, where: str) -> MCQItem:
    for key in ("question", "choices", "answer"):
        if key not in row:
            raise DataError(f"{where}: missing field {key!r}; each item needs question, choices, answer")
    choices = row["choices"]
    if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
        raise DataError(f"{where}: choices must be a list of 2..{len(LETTERS)} strings, got {choices!r:.80}")
    ans = row["answer"]
    if isinstance(ans, str) and len(ans) == 1 and ans.upper() in LETTERS:
        ans = LETTERS.index(ans.upper())
    if not isinstance(ans, int) or not 0 <= ans < len(choices):
        raise DataError(
            f"{where}: answer must be an index 0..{len(choices) - 1} (or a letter), got {row['answer']!r}"
        )
    return MCQItem(
        str(row.get("id", where)),
        str(row["question"]),
        tuple(str(c) for c in choices),
        ans,
        str(row.get("subject", "")),
    )


def load_mcq_jsonl(path: str | Path) -> list[MCQItem]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"MCQ file {path} does not exist")
    items = []
    for n, line in enumerate(read_user_text(path, "a JSONL file of MCQ items").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{n}: not valid JSON ({err.msg})") from None
            items.append(_validate(row, f"{path.name}:{n}"))
    if not items:
        raise DataError(f"{path} holds no items")
    return items


def load_builtin_mcq() -> list[MCQItem]:
    return load_mcq_jsonl(Path(str(resources.files("steerlab.data") / "mcq" / "steerlab_mcq.jsonl")))


HF_BENCHMARKS = {
    "mmlu": ("cais/mmlu", "all", "test"),
    "truthfulqa": ("truthfulqa/truthful_qa", "multiple_choice", "validation"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", "test"),
    "commonsense_qa": ("tau/commonsense_qa", None, "validation"),
    "openbookqa": ("allenai/openbookqa", "main", "test"),
}


def load_benchmark(name: str, limit: int | None = None) -> list[MCQItem]:
    """'steerlab_mcq' (shipped), a path to a JSONL, or a hub benchmark (online; needs `datasets`)."""
    if name == "steerlab_mcq":
        items = load_builtin_mcq()
    elif name.endswith(".jsonl"):
        items = load_mcq_jsonl(name)
    elif name in HF_BENCHMARKS:
        items = _load_hf(name)
    else:
        raise DataError(
            f"unknown benchmark {name!r}; valid: steerlab_mcq, a .jsonl path, {', '.join(HF_BENCHMARKS)}"
        )
    return items[:limit] if limit else items


def _load_hf(name: str) -> list[MCQItem]:
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"benchmark {name!r} needs the `datasets` package: pip install 'steerlab[data]'"
        ) from None
    repo, cfg, split = HF_BENCHMARKS[name]
    try:
        ds = datasets.load_dataset(repo, cfg, split=split)
    except Exception as err:
        raise DataError(
            f"could not load {name!r} from the hub ({type(err).__name__}); offline users can pass a "
            "JSONL of question, choices, answer"
        ) from None
    out = []
    for i, r in enumerate(ds):
        if name == "mmlu":
            row = {
                "question": r["question"],
                "choices": r["choices"],
                "answer": r["answer"],
                "subject": r["subject"],
            }
        elif name == "truthfulqa":
            mc = r["mc1_targets"]
            row = {"question": r["question"], "choices": mc["choices"], "answer": mc["labels"].index(1)}
        elif name in ("arc_challenge", "openbookqa", "commonsense_qa"):
            q = r.get("question_stem", r.get("question"))
            ch = r["choices"]
            row = {"question": q, "choices": ch["text"], "answer": ch["label"].index(r["answerKey"])}
        out.append(_validate({**row, "id": f"{name}-{i}"}, f"{name}[{i}]"))
    return out


def option_seed(item: MCQItem, run_seed: int) -> int:
    """A seed derived from the run seed AND the question, so each question gets its own order."""
    digest = hashlib.sha256(f"{run_seed}:{item.id}:{item.question}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def shuffle_options(item: MCQItem, run_seed: int) -> MCQItem:
    order = list(range(len(item.choices)))
    random.Random(option_seed(item, run_seed)).shuffle(order)
    return replace(item, choices=tuple(item.choices[i] for i in order), answer=order.index(item.answer))


def format_mcq_prompt(item: MCQItem, answer_text: str | None = None) -> str:
    """The PAS prompt; with ``answer_text`` the answer is appended (the iPAS variants read that state)."""
    lines = [item.question] + [f"{LETTERS[i]}: {c}" for i, c in enumerate(item.choices)]
    text = "\n".join(lines) + "\nRespond with a single letter.\nAnswer:"
    return text if answer_text is None else f"{text} {answer_text}"


def letter_tokens(tokenizer: object, n: int) -> list[list[int]]:
    """Token ids for each letter in both 'A' and ' A' forms (the prompt ends with 'Answer:')."""
    out = []
    for letter in LETTERS[:n]:
        ids = []
        for form in (letter, f" {letter}"):
            toks = tokenizer.encode(form, add_special_tokens=False)
            if len(toks) != 1:
                warnings.warn(
                    f"{form!r} is {len(toks)} tokens for this tokenizer; scoring its first token",
                    stacklevel=2,
                )
            if toks and toks[0] not in ids:
                ids.append(toks[0])
        out.append(ids)
    return out


def split_items(
    items: list[MCQItem], proportions: tuple[float, float, float], seed: int
) -> tuple[list[MCQItem], list[MCQItem], list[MCQItem]]:
    if abs(sum(proportions) - 1) > 1e-6 or min(proportions) < 0:
        raise UserError(f"split proportions must be >= 0 and sum to 1, got {proportions}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_tr = round(proportions[0] * len(items))
    n_va = round(proportions[1] * len(items))
    pick = [items[i] for i in order]
    return pick[:n_tr], pick[n_tr : n_tr + n_va], pick[n_tr + n_va :]
