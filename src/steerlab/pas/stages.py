"""One PAS job (one benchmark, one seed) as resumable stages: data -> score -> vectors -> sweep -> test -> report.

Everything is steered at the last prompt token at the same site the vector was read from, so a sweep costs one
token forward per (layer, strength) per item (``generation.next_token_scores``).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import torch

from ..capture import capture, mean_norm
from ..config import DataError
from ..eval.stats import bootstrap_mean, mcnemar_exact
from ..generation import next_token_scores
from ..models import LoadedModel
from ..runs import load_tensors, save_tensors
from ..stages import Runner, Stage, StageContext
from ..steering import steer
from ..vectors import get_estimator, random_direction
from .baselines import gold_letter_counts, leak_report, majority_letter_baseline
from .config import PasConfig
from .mcq import (
    LETTERS,
    MCQItem,
    format_mcq_prompt,
    letter_tokens,
    load_benchmark,
    shuffle_options,
    split_items,
)

SPLITS = ("train", "valid", "test")
DATA = ("benchmarks", "seed", "limit", "train_fraction", "valid_fraction", "test_fraction")


def job_config(cfg: PasConfig, benchmark: str, seed: int) -> PasConfig:
    """The config of one job: one benchmark, one seed."""
    return cfg.replace(benchmarks=[benchmark], seed=seed, seeds=[])


def _prompts(items: list[MCQItem], chat: bool, prefix: list[str] | None = None) -> list:
    texts = [format_mcq_prompt(it) for it in items]
    if prefix is not None:
        texts = [p + t for p, t in zip(prefix, texts)]
    return [[{"role": "user", "content": t}] for t in texts] if chat else texts


def score(
    lm: LoadedModel,
    items: list[MCQItem],
    conditions: dict,
    *,
    chat: bool = False,
    batch_size: int = 16,
    prefix: list[str] | None = None,
    progress: bool = False,
    desc: str = "score",
) -> dict[str, np.ndarray]:
    """Predicted option index per item and condition (argmax over that item's letters, 'A' and ' A' summed)."""
    n_max = max(len(it.choices) for it in items)
    scores = next_token_scores(
        lm,
        _prompts(items, chat, prefix),
        conditions,
        token_ids=letter_tokens(lm.tokenizer, n_max),
        batch_size=batch_size,
        progress=progress,
        desc=desc,
    )
    mask = torch.tensor([[j < len(it.choices) for j in range(n_max)] for it in items])
    return {k: v.masked_fill(~mask, float("-inf")).argmax(-1).numpy() for k, v in scores.items()}


def _acc(pred: np.ndarray | list, items: list[MCQItem]) -> np.ndarray:
    return np.array([p == it.answer for p, it in zip(pred, items)], dtype=float)


def _setup(lm: LoadedModel, v: torch.Tensor, layer: int, coef: float, site: str):  # noqa: ANN202
    return lambda idx: steer(lm, v, layer=layer, site=site, coef=coef, policy="prompt_last")


def _items(ctx: StageContext, split: str) -> list[MCQItem]:
    rows = [
        json.loads(x) for x in (ctx.path("data") / f"{split}.jsonl").read_text().splitlines() if x.strip()
    ]
    return [MCQItem(r["id"], r["question"], tuple(r["choices"]), r["answer"], r["subject"]) for r in rows]


# ---------------------------------------------------------------- stages


def stage_data(ctx: StageContext) -> dict:
    """Items with options shuffled per question, a seeded sample, train/valid/test, and the letter-leak check."""
    c = ctx.config
    (name,) = c.benchmarks
    items = [shuffle_options(it, c.seed) for it in load_benchmark(name)]
    random.Random(c.seed).shuffle(items)
    items = items[: c.limit]
    splits = dict(
        zip(SPLITS, split_items(items, (c.train_fraction, c.valid_fraction, c.test_fraction), c.seed))
    )
    for split, its in splits.items():
        with open(ctx.out / f"{split}.jsonl", "w") as f:
            for it in its:
                f.write(json.dumps(it.__dict__) + "\n")
    leak = leak_report(splits["train"])
    letter, acc = majority_letter_baseline(splits["train"], splits["test"])
    return {
        "benchmark": name,
        "n": {s: len(v) for s, v in splits.items()},
        "leak_train": leak.__dict__,
        "majority_letter": {"letter": letter, "test_accuracy": acc},
        "gold_letters_test": gold_letter_counts(splits["test"]),
    }


def stage_score(ctx: StageContext) -> dict:
    """The unsteered model's answer on every item."""
    c = ctx.config
    preds = {}
    for split in SPLITS:
        its = _items(ctx, split)
        p = score(
            ctx.lm,
            its,
            {"base": None},
            chat=c.use_chat_template,
            batch_size=c.batch_size,
            progress=ctx.progress,
            desc=f"score {split}",
        )["base"]
        preds[split] = [int(x) for x in p]
    acc = {s: float(_acc(preds[s], _items(ctx, s)).mean()) for s in SPLITS}
    return {"predictions": preds, "accuracy": acc}


def _states(ctx: StageContext, texts: list, layers: list[int]) -> dict[int, torch.Tensor]:
    c = ctx.config
    acts = capture(
        ctx.lm, texts, layers, sites=c.site, positions="last", batch_size=c.batch_size, progress=False
    )
    return {k: acts[(k, c.site)] for k in layers}


def stage_vectors(ctx: StageContext) -> dict:
    """PASf, iPASa, iPASwo per layer (unit norm, the mean-difference estimator) and the mean hidden norm per layer."""
    c, lm = ctx.config, ctx.lm
    train = _items(ctx, "train")
    pred = ctx.result("score")["predictions"]["train"]
    layers = c.layer_list(lm.n_layers)
    right = [i for i, it in enumerate(train) if pred[i] == it.answer]
    wrong = [i for i, it in enumerate(train) if pred[i] != it.answer]
    if not right or not wrong:
        raise DataError(
            f"PAS needs both right and wrong train items; got {len(right)} right, {len(wrong)} wrong"
        )
    estimate = get_estimator("mean_difference")
    base = _states(ctx, _prompts(train, c.use_chat_template), layers)
    norms = {k: mean_norm(base[k]) for k in layers}

    def with_answer(idx: list[int], choice: list[int]) -> list:
        texts = [
            format_mcq_prompt(train[i], f"{LETTERS[ch]}: {train[i].choices[ch]}")
            for i, ch in zip(idx, choice)
        ]
        return [[{"role": "user", "content": t}] for t in texts] if c.use_chat_template else texts

    tensors: dict[str, torch.Tensor] = {}
    if "PASf" in c.methods:  # prompts answered right - prompts answered wrong
        tensors.update({f"PASf.L{k}": estimate(base[k][right], base[k][wrong]) for k in layers})
    if "iPASa" in c.methods or "iPASwo" in c.methods:
        ok_right = _states(ctx, with_answer(right, [train[i].answer for i in right]), layers)
        ok_wrong = _states(ctx, with_answer(wrong, [train[i].answer for i in wrong]), layers)
        chosen = _states(ctx, with_answer(wrong, [pred[i] for i in wrong]), layers)
        if "iPASa" in c.methods:  # question + right answer (right items) - question + chosen wrong answer
            tensors.update({f"iPASa.L{k}": estimate(ok_right[k], chosen[k]) for k in layers})
        if "iPASwo" in c.methods:  # on wrong items only, paired: right answer - the model's wrong answer
            tensors.update({f"iPASwo.L{k}": estimate(ok_wrong[k], chosen[k]) for k in layers})
    save_tensors(ctx.out / "vectors.safetensors", tensors)
    return {
        "layers": layers,
        "norms": {str(k): v for k, v in norms.items()},
        "n_right": len(right),
        "n_wrong": len(wrong),
    }


def _vectors(ctx: StageContext) -> tuple[dict[str, dict[int, torch.Tensor]], dict[int, float], list[int]]:
    t = load_tensors(ctx.path("vectors") / "vectors.safetensors")
    meta = ctx.result("vectors")
    out: dict[str, dict[int, torch.Tensor]] = {}
    for name, v in t.items():
        method, layer = name.split(".L")
        out.setdefault(method, {})[int(layer)] = v
    return out, {int(k): v for k, v in meta["norms"].items()}, meta["layers"]


def stage_sweep(ctx: StageContext) -> dict:
    """Layer x strength on VALID, per method; the best setting (ties: the smaller strength)."""
    c, lm = ctx.config, ctx.lm
    vecs, norms, layers = _vectors(ctx)
    valid = _items(ctx, "valid")
    out = {}
    for method, per_layer in vecs.items():
        conds = {
            f"{k}|{s}": _setup(lm, per_layer[k], k, s * norms[k], c.site) for k in layers for s in c.strengths
        }
        pred = score(
            lm,
            valid,
            conds,
            chat=c.use_chat_template,
            batch_size=c.batch_size,
            progress=ctx.progress,
            desc=f"{method} sweep",
        )
        grid = {cond: float(_acc(p, valid).mean()) for cond, p in pred.items()}
        best = max(grid, key=lambda cond: (grid[cond], -float(cond.split("|")[1])))
        layer, strength = int(best.split("|")[0]), float(best.split("|")[1])
        out[method] = {
            "layer": layer,
            "strength": strength,
            "coef": strength * norms[layer],
            "val_grid": grid,
            "val_best": grid[best],
        }
    return out


def icl_prefixes(pool: list[MCQItem], items: list[MCQItem], k: int, seed: int) -> list[str]:
    """k solved exemplars per item, each item with its own draw (seeded by the item), from ``pool``."""
    out = []
    for it in items:
        rng = random.Random(f"{seed}:{it.id}")
        shots = rng.sample([p for p in pool if p.id != it.id], min(k, len(pool)))
        out.append("".join(format_mcq_prompt(s) + f" {s.gold_letter}\n\n" for s in shots))
    return out


def stage_test(ctx: StageContext) -> dict:
    """TEST at each method's chosen setting with strength-0, -v and random-direction controls (and ICL)."""
    c, lm = ctx.config, ctx.lm
    vecs, norms, _ = _vectors(ctx)
    sweep = ctx.result("sweep")
    base_pred = ctx.result("score")["predictions"]
    test, train = _items(ctx, "test"), _items(ctx, "train")
    base_acc = _acc(base_pred["test"], test)
    kw = dict(chat=c.use_chat_template, batch_size=c.batch_size, progress=ctx.progress)
    out: dict = {}
    for method, sel in sweep.items():
        v, layer, coef = vecs[method][sel["layer"]], sel["layer"], sel["coef"]
        controls = {
            "steered": _setup(lm, v, layer, coef, c.site),
            "zero": _setup(lm, v, layer, 0.0, c.site),
            "negative": _setup(lm, -v, layer, coef, c.site),
        }
        for r in range(c.n_random_controls):
            controls[f"random{r}"] = _setup(
                lm, random_direction(lm.hidden_size, c.seed * 1000 + r), layer, coef, c.site
            )
        preds = score(lm, test, controls, desc=f"{method} test", **kw)
        rows = {}
        for cond, p in preds.items():
            acc = _acc(p, test)
            b, cc, pval = mcnemar_exact(base_acc.astype(bool), acc.astype(bool))
            rows[cond] = {
                "accuracy": bootstrap_mean(acc, c.n_boot, seed=c.seed),
                "mcnemar_vs_unsteered": {"right_to_wrong": b, "wrong_to_right": cc, "p_value": pval},
                "pred_letters": dict(
                    sorted({LETTERS[i]: int((p == i).sum()) for i in set(p.tolist())}.items())
                ),
                "predictions": [int(x) for x in p],
            }
        out[method] = {"test": rows}
        if c.icl_k > 0:
            wrong_train = [it for it, p in zip(train, base_pred["train"]) if p != it.answer] or train
            pre = icl_prefixes(wrong_train, test, c.icl_k, c.seed)
            icl = score(
                lm, test, {"icl": None, "icl+steer": controls["steered"]}, prefix=pre, desc="ICL", **kw
            )
            out[method]["icl"] = {
                cond: bootstrap_mean(_acc(p, test), c.n_boot, seed=c.seed) for cond, p in icl.items()
            }
    return out


def stage_report(ctx: StageContext) -> dict:
    """The job's results (one JSON), heatmaps of the VALID sweep, the TEST plot, prediction CSVs."""
    c = ctx.config
    data, sc, sweep, test = (ctx.result(s) for s in ("data", "score", "sweep", "test"))
    vmeta = ctx.result("vectors")
    name = data["benchmark"]
    test_items = _items(ctx, "test")
    res = {
        **{k: data[k] for k in ("benchmark", "n", "leak_train", "majority_letter", "gold_letters_test")},
        "seed": c.seed,
        "train_right_wrong": {"n_right": vmeta["n_right"], "n_wrong": vmeta["n_wrong"]},
        "unsteered": sc["accuracy"],
        "methods": {},
    }
    predictions = {"unsteered": sc["predictions"]["test"]}
    for method, sel in sweep.items():
        rows = {
            cond: {k: v for k, v in r.items() if k != "predictions"}
            for cond, r in test[method]["test"].items()
        }
        res["methods"][method] = {
            **sel,
            "test": rows,
            **({"icl": test[method]["icl"]} if "icl" in test[method] else {}),
        }
        predictions[method] = test[method]["test"]["steered"]["predictions"]
        _heatmap(
            sel["val_grid"],
            vmeta["layers"],
            list(c.strengths),
            sc["accuracy"]["valid"],
            ctx.out / f"heatmap_{method}.png",
            f"{name} {method}: VALID accuracy",
        )
    _test_plot(res, ctx.out / "test.png")
    _write_predictions(ctx.out, test_items, predictions)
    return res


def _heatmap(
    grid: dict, layers: list[int], strengths: list[float], base: float, path: Path, title: str
) -> None:
    from ..eval.plots import heatmap

    mat = [[grid[f"{k}|{s}"] - base for s in strengths] for k in layers]
    heatmap(
        mat,
        [f"L{k}" for k in layers],
        [f"{s:g}" for s in strengths],
        path,
        title=f"{title}, change vs unsteered ({base:.2f})",
        fmt="+.2f",
        xlabel="strength (× mean hidden norm)",
        ylabel="layer",
        colorbar_label="Δ accuracy vs unsteered",
    )


def _test_plot(res: dict, path: Path) -> None:
    from ..eval.plots import bar_with_ci

    labels, vals, lo, hi = [], [], [], []
    for m, r in res["methods"].items():
        for cond, row in r["test"].items():
            labels.append(f"{m}:{cond}")
            vals.append(row["accuracy"][0])
            lo.append(row["accuracy"][1])
            hi.append(row["accuracy"][2])
    bar_with_ci(
        labels,
        vals,
        lo,
        hi,
        path,
        title=f"{res['benchmark']} TEST accuracy (unsteered {res['unsteered']['test']:.2f}, majority letter "
        f"{res['majority_letter']['test_accuracy']:.2f})",
        ylabel="accuracy",
    )


def _write_predictions(out: Path, test: list[MCQItem], predictions: dict) -> None:
    for method, pred in predictions.items():
        with open(out / f"predictions_{method}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "gold", "pred", "correct", "question"])
            for it, p in zip(test, pred):
                w.writerow([it.id, it.gold_letter, LETTERS[int(p)], int(p == it.answer), it.question])


STAGES = (
    Stage(
        "data", stage_data, reads=DATA, doc="items, option shuffle per question, splits, letter-leak check"
    ),
    Stage(
        "score",
        stage_score,
        reads=(*DATA, "use_chat_template"),
        after=("data",),
        uses_model=True,
        knobs=("batch_size",),
        doc="the unsteered model's answers",
    ),
    Stage(
        "vectors",
        stage_vectors,
        reads=(*DATA, "use_chat_template", "methods", "layers", "site"),
        after=("data", "score"),
        uses_model=True,
        knobs=("batch_size",),
        doc="PASf / iPASa / iPASwo per layer",
    ),
    Stage(
        "sweep",
        stage_sweep,
        reads=(*DATA, "use_chat_template", "site", "strengths"),
        after=("data", "vectors"),
        uses_model=True,
        knobs=("batch_size",),
        doc="layer x strength on VALID",
    ),
    Stage(
        "test",
        stage_test,
        reads=(*DATA, "use_chat_template", "site", "n_random_controls", "n_boot", "icl_k"),
        after=("data", "score", "vectors", "sweep"),
        uses_model=True,
        knobs=("batch_size",),
        doc="TEST with controls (and ICL)",
    ),
    Stage(
        "report",
        stage_report,
        reads=(*DATA, "strengths"),
        after=("data", "score", "vectors", "sweep", "test"),
        doc="results.json, heatmaps, plots, prediction CSVs",
    ),
)


def job_runner(cfg: PasConfig, root: str | Path, progress: bool = True, models: object = None) -> Runner:
    return Runner(STAGES, cfg, root, progress=progress, models=models)
