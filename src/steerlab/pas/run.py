"""PAS end to end: score, build vectors, sweep layer x strength on VALIDATION, report TEST with controls.

Everything is steered at the last prompt token at the same site the vector was read from, so a sweep costs one
token forward per (layer, strength) per item (``generation.next_token_scores``).
"""

from __future__ import annotations

import csv
import logging
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..capture import capture, mean_norm
from ..eval.stats import bootstrap_mean, mcnemar_exact
from ..generation import next_token_scores
from ..models import LoadedModel
from ..runs import save_csv, save_json, save_tensors
from ..steering import steer
from ..vectors import random_direction, unit
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

log = logging.getLogger(__name__)


def _prompts(items: list[MCQItem], cfg: PasConfig, prefix: list[str] | None = None) -> list:
    texts = [format_mcq_prompt(it) for it in items]
    if prefix is not None:
        texts = [p + t for p, t in zip(prefix, texts)]
    return [[{"role": "user", "content": t}] for t in texts] if cfg.use_chat_template else texts


def score(
    lm: LoadedModel,
    items: list[MCQItem],
    cfg: PasConfig,
    conditions: dict,
    prefix: list[str] | None = None,
    desc: str = "score",
) -> dict[str, np.ndarray]:
    """Predicted option index per item and condition (argmax over that item's letters, 'A' and ' A' summed)."""
    n_max = max(len(it.choices) for it in items)
    toks = letter_tokens(lm.tokenizer, n_max)
    scores = next_token_scores(
        lm,
        _prompts(items, cfg, prefix),
        conditions,
        token_ids=toks,
        batch_size=cfg.batch_size,
        progress=False,
        desc=desc,
    )
    mask = torch.tensor([[j < len(it.choices) for j in range(n_max)] for it in items])
    return {k: v.masked_fill(~mask, float("-inf")).argmax(-1).numpy() for k, v in scores.items()}


def _states(lm: LoadedModel, texts: list, layers: list[int], cfg: PasConfig) -> dict[int, torch.Tensor]:
    acts = capture(
        lm, texts, layers, sites=cfg.site, positions="last", batch_size=cfg.batch_size, progress=False
    )
    return {k: acts[(k, cfg.site)] for k in layers}


def build_vectors(
    lm: LoadedModel, train: list[MCQItem], pred: np.ndarray, cfg: PasConfig, layers: list[int]
) -> tuple[dict[str, dict[int, torch.Tensor]], dict[int, float], dict]:
    """PASf, iPASa, iPASwo per layer (unit norm), and the mean hidden norm per layer (the strength unit)."""
    right = [i for i, it in enumerate(train) if pred[i] == it.answer]
    wrong = [i for i, it in enumerate(train) if pred[i] != it.answer]
    info = {"n_right": len(right), "n_wrong": len(wrong)}
    if not right or not wrong:
        raise ValueError(
            f"PAS needs both right and wrong train items; got {len(right)} right, {len(wrong)} wrong"
        )
    base = _states(lm, _prompts(train, cfg), layers, cfg)
    norms = {k: mean_norm(base[k]) for k in layers}

    def with_answer(items: list[MCQItem], idx: list[int], choice: list[int]) -> list:
        texts = [
            format_mcq_prompt(items[i], f"{LETTERS[c]}: {items[i].choices[c]}") for i, c in zip(idx, choice)
        ]
        return [[{"role": "user", "content": t}] for t in texts] if cfg.use_chat_template else texts

    vecs: dict[str, dict[int, torch.Tensor]] = {}
    if "PASf" in cfg.methods:
        vecs["PASf"] = {k: unit(base[k][right].mean(0) - base[k][wrong].mean(0)) for k in layers}
    if "iPASa" in cfg.methods or "iPASwo" in cfg.methods:
        ok_right = _states(lm, with_answer(train, right, [train[i].answer for i in right]), layers, cfg)
        ok_wrong = _states(lm, with_answer(train, wrong, [train[i].answer for i in wrong]), layers, cfg)
        chosen = _states(lm, with_answer(train, wrong, [int(pred[i]) for i in wrong]), layers, cfg)
        if "iPASa" in cfg.methods:
            vecs["iPASa"] = {k: unit(ok_right[k].mean(0) - chosen[k].mean(0)) for k in layers}
        if "iPASwo" in cfg.methods:
            vecs["iPASwo"] = {k: unit((ok_wrong[k] - chosen[k]).mean(0)) for k in layers}
    return vecs, norms, info


def _setup(lm: LoadedModel, v: torch.Tensor, layer: int, coef: float, site: str):  # noqa: ANN202
    return lambda idx: steer(lm, v, layer=layer, site=site, coef=coef, policy="prompt_last")


def _acc(pred: np.ndarray, items: list[MCQItem]) -> np.ndarray:
    return np.array([p == it.answer for p, it in zip(pred, items)], dtype=float)


def icl_prefixes(pool: list[MCQItem], items: list[MCQItem], k: int, seed: int) -> list[str]:
    """k solved exemplars per item, each item with its own draw (seeded by the item), from ``pool``."""
    out = []
    for it in items:
        rng = random.Random(f"{seed}:{it.id}")
        shots = rng.sample([p for p in pool if p.id != it.id], min(k, len(pool)))
        out.append("".join(format_mcq_prompt(s) + f" {s.gold_letter}\n\n" for s in shots))
    return out


def run_benchmark(lm: LoadedModel, cfg: PasConfig, name: str, seed: int, out: Path) -> dict:
    items = [shuffle_options(it, seed) for it in load_benchmark(name)]
    random.Random(seed).shuffle(items)
    items = items[: cfg.max_sample_size]
    train, val, test = split_items(
        items, (cfg.n_train_proportion, cfg.n_val_proportion, cfg.n_test_proportion), seed
    )
    layers = cfg.layers(lm.n_layers)
    leak = leak_report(train)
    maj_letter, maj_acc = majority_letter_baseline(train, test)
    base = {
        split: score(lm, its, cfg, {"base": None})["base"]
        for split, its in (("train", train), ("val", val), ("test", test))
    }
    vecs, norms, info = build_vectors(lm, train, base["train"], cfg, layers)
    res: dict = {
        "benchmark": name,
        "seed": seed,
        "n": {"train": len(train), "val": len(val), "test": len(test)},
        "leak_train": leak.__dict__,
        "majority_letter": {"letter": maj_letter, "test_accuracy": maj_acc},
        "gold_letters_test": gold_letter_counts(test),
        "train_right_wrong": info,
        "unsteered": {
            s: float(_acc(base[s], its).mean()) for s, its in (("train", train), ("val", val), ("test", test))
        },
        "methods": {},
    }
    base_acc_test = _acc(base["test"], test)
    predictions = {"unsteered": base["test"]}
    tensors = {}
    for method, per_layer in vecs.items():
        conds = {
            f"{k}|{s}": _setup(lm, per_layer[k], k, s * norms[k], cfg.site)
            for k in layers
            for s in cfg.steer_strengths
        }
        val_pred = score(lm, val, cfg, conds, desc=f"{method} sweep")
        grid = {c: float(_acc(p, val).mean()) for c, p in val_pred.items()}
        best = max(grid, key=lambda c: (grid[c], -float(c.split("|")[1])))
        layer, strength = int(best.split("|")[0]), float(best.split("|")[1])
        v, coef = per_layer[layer], strength * norms[layer]
        controls = {
            "steered": _setup(lm, v, layer, coef, cfg.site),
            "zero": _setup(lm, v, layer, 0.0, cfg.site),
            "negative": _setup(lm, -v, layer, coef, cfg.site),
        }
        for r in range(cfg.n_random_controls):
            controls[f"random{r}"] = _setup(
                lm, random_direction(lm.hidden_size, seed * 1000 + r), layer, coef, cfg.site
            )
        test_pred = score(lm, test, cfg, controls, desc=f"{method} test")
        rows = {}
        for c, p in test_pred.items():
            acc = _acc(p, test)
            b, cc, pval = mcnemar_exact(base_acc_test.astype(bool), acc.astype(bool))
            rows[c] = {
                "accuracy": bootstrap_mean(acc, cfg.n_boot, seed=seed),
                "mcnemar_vs_unsteered": {"right_to_wrong": b, "wrong_to_right": cc, "p_value": pval},
                "pred_letters": dict(sorted({LETTERS[i]: int((p == i).sum()) for i in set(p)}.items())),
            }
        predictions[method] = test_pred["steered"]
        res["methods"][method] = {
            "layer": layer,
            "strength": strength,
            "coef": coef,
            "val_grid": grid,
            "val_best": grid[best],
            "test": rows,
        }
        tensors.update({f"{method}.L{k}": v for k, v in per_layer.items()})
        _heatmap(
            grid,
            layers,
            cfg.steer_strengths,
            res["unsteered"]["val"],
            out / f"heatmap_{name}_{method}.png",
            f"{name} {method}: VALIDATION accuracy (unsteered {res['unsteered']['val']:.2f})",
        )
        if cfg.icl_k > 0:
            wrong_train = [it for it, p in zip(train, base["train"]) if p != it.answer] or train
            pre = icl_prefixes(wrong_train, test, cfg.icl_k, seed)
            icl = score(
                lm, test, cfg, {"icl": None, "icl+steer": controls["steered"]}, prefix=pre, desc="ICL"
            )
            res["methods"][method]["icl"] = {
                c: bootstrap_mean(_acc(p, test), cfg.n_boot, seed=seed) for c, p in icl.items()
            }
    save_tensors(out / f"vectors_{name}.safetensors", tensors)
    _write_predictions(out, name, test, predictions)
    _test_plot(res, out / f"test_{name}.png")
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
        title=title + " (Δ vs unsteered)",
        fmt="+.2f",
    )


def _test_plot(res: dict, path: Path) -> None:
    from ..eval.plots import bar_with_ci

    labels, vals, lo, hi = [], [], [], []
    for m, r in res["methods"].items():
        for c, row in r["test"].items():
            labels.append(f"{m}:{c}")
            vals.append(row["accuracy"][0])
            lo.append(row["accuracy"][1])
            hi.append(row["accuracy"][2])
    bar_with_ci(
        labels,
        vals,
        lo,
        hi,
        path,
        title=f"{res['benchmark']} TEST accuracy (unsteered "
        f"{res['unsteered']['test']:.2f}, majority letter {res['majority_letter']['test_accuracy']:.2f})",
        ylabel="accuracy",
    )


def _write_predictions(out: Path, name: str, test: list[MCQItem], predictions: dict) -> None:
    for method, pred in predictions.items():
        with open(out / f"predictions_{name}_{method}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "gold", "pred", "correct", "question"])
            for it, p in zip(test, pred):
                w.writerow([it.id, it.gold_letter, LETTERS[int(p)], int(p == it.answer), it.question])


def run_pas(cfg: PasConfig, lm: LoadedModel | None = None) -> dict:
    """All benchmarks and seeds; writes under ``output_dir/<model>/<target>/seed_<seed>/``."""
    if lm is None:
        from ..models import load_model

        lm = load_model(cfg.model_name, device=cfg.device, dtype=cfg.dtype, quantization=cfg.quantization)
    root = Path(cfg.output_dir) / lm.name.replace("/", "_") / cfg.steer_target
    summary = []
    for seed in [cfg.seed, *cfg.seeds]:
        out = root / f"seed_{seed}"
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        results = {name: run_benchmark(lm, cfg, name, seed, out) for name in cfg.benchmarks}
        if cfg.catastrophic_test:
            results["forgetting"] = forgetting_test(lm, cfg, results, seed, out)
        save_json(out / "results.json", results)
        save_json(
            out / "run_log.json",
            {
                "config": cfg.to_dict(),
                "seed": seed,
                "seconds": time.time() - t0,
                "steerlab": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "model": lm.name,
                "fingerprint": lm.fingerprint,
                "device": str(lm.device),
            },
        )
        _cross_benchmark(out, results)
        for name, r in results.items():
            if name == "forgetting":
                continue
            for m, mr in r["methods"].items():
                summary.append(
                    {
                        "seed": seed,
                        "benchmark": name,
                        "method": m,
                        "layer": mr["layer"],
                        "strength": mr["strength"],
                        "unsteered": r["unsteered"]["test"],
                        "steered": mr["test"]["steered"]["accuracy"][0],
                        "negative": mr["test"]["negative"]["accuracy"][0],
                        "random": mr["test"]["random0"]["accuracy"][0] if "random0" in mr["test"] else None,
                        "majority_letter": r["majority_letter"]["test_accuracy"],
                        "mcnemar_p": mr["test"]["steered"]["mcnemar_vs_unsteered"]["p_value"],
                    }
                )
    save_csv(root / "summary_seeds.csv", summary)
    aggregate = aggregate_seeds(summary)
    save_csv(root / "summary_aggregate.csv", aggregate)
    return {"root": str(root), "summary": summary, "aggregate": aggregate}


def aggregate_seeds(summary: list[dict]) -> list[dict]:
    """Per benchmark and method over seeds: mean and sample sd of accuracies and of the steering gain."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in summary:
        groups.setdefault((row["benchmark"], row["method"]), []).append(row)
    out = []
    for (bench, method), rows in groups.items():
        gain = np.array([r["steered"] - r["unsteered"] for r in rows])
        steered = np.array([r["steered"] for r in rows])
        sd = lambda a: float(a.std(ddof=1)) if len(a) > 1 else float("nan")  # noqa: E731
        out.append(
            {
                "benchmark": bench,
                "method": method,
                "n_seeds": len(rows),
                "unsteered_mean": float(np.mean([r["unsteered"] for r in rows])),
                "steered_mean": float(steered.mean()),
                "steered_sd": sd(steered),
                "gain_mean": float(gain.mean()),
                "gain_sd": sd(gain),
                "majority_letter_mean": float(np.mean([r["majority_letter"] for r in rows])),
            }
        )
    return out


def forgetting_test(lm: LoadedModel, cfg: PasConfig, results: dict, seed: int, out: Path) -> dict:
    """Vectors tuned on each benchmark, applied at their selected operating point to the target benchmark."""
    from ..runs import load_tensors

    target = [shuffle_options(it, seed) for it in load_benchmark(cfg.target_benchmark)][: cfg.max_sample_size]
    rows = {}
    for name, r in results.items():
        vecs = load_tensors(out / f"vectors_{name}.safetensors")
        conds = {"unsteered": None}
        for m, mr in r["methods"].items():
            conds[f"{name}:{m}"] = _setup(lm, vecs[f"{m}.L{mr['layer']}"], mr["layer"], mr["coef"], cfg.site)
        pred = score(lm, target, cfg, conds, desc="forgetting")
        rows.update({c: bootstrap_mean(_acc(p, target), cfg.n_boot, seed=seed) for c, p in pred.items()})
    return {"target": cfg.target_benchmark, "accuracy": rows}


def _cross_benchmark(out: Path, results: dict) -> None:
    summary, flips = [], []
    for name, r in results.items():
        if name == "forgetting":
            continue
        base = {}
        with open(out / f"predictions_{name}_unsteered.csv") as f:
            base = {row["id"]: row for row in csv.DictReader(f)}
        for m in r["methods"]:
            t = r["methods"][m]["test"]["steered"]
            summary.append(
                {
                    "benchmark": name,
                    "method": m,
                    "unsteered": r["unsteered"]["test"],
                    "steered": t["accuracy"][0],
                    "ci_low": t["accuracy"][1],
                    "ci_high": t["accuracy"][2],
                    "mcnemar_p": t["mcnemar_vs_unsteered"]["p_value"],
                    "majority_letter": r["majority_letter"]["test_accuracy"],
                }
            )
            with open(out / f"predictions_{name}_{m}.csv") as f:
                for row in csv.DictReader(f):
                    b = base[row["id"]]
                    if b["correct"] != row["correct"]:
                        flips.append(
                            {
                                "benchmark": name,
                                "method": m,
                                "id": row["id"],
                                "flip": "wrong->right" if row["correct"] == "1" else "right->wrong",
                                "gold": row["gold"],
                                "unsteered": b["pred"],
                                "steered": row["pred"],
                                "question": row["question"],
                            }
                        )
    save_csv(out / "cross_benchmark_summary.csv", summary)
    save_csv(out / "cross_benchmark_flips.csv", flips)
