"""The tool-use transcoder study as resumable stages under ``runs/sae/<name>/<stage>/``.

data -> finetune (LoRA) -> base (transcoder on the base model) -> delta (latents on the finetuned model, and a
control on the base model) -> evaluate (splice conditions by generation + completion CE) -> attribute (delta
latents at the decision token) -> report. A finished stage is skipped on rerun unless its parameters changed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..eval.stats import bootstrap_mean
from ..runs import RunDir, load_json, save_json
from .calc_data import make_calc_splits
from .config import ToolUseConfig
from .corpus import calc_conversations, general_prompts

log = logging.getLogger(__name__)
STAGES = ("data", "finetune", "base", "delta", "evaluate", "attribute", "report")
SUBSETS = ("tool", "ood", "copy")


@dataclass
class ToolUseRun:
    config: ToolUseConfig
    root: Path
    progress: bool = True
    _models: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.run = RunDir(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        save_json(self.root / "config.json", self.config.to_dict())

    # ---------------------------------------------------------------- helpers
    def model(self, which: str):  # noqa: ANN201
        """'base' (the configured model) or 'finetuned' (the merged LoRA model of the finetune stage)."""
        from ..models import load_model

        if which not in self._models:
            spec = self.config.model if which == "base" else str(self.run.path("finetune") / "model")
            self._models[which] = load_model(spec, device=self.config.device)
        return self._models[which]

    def rows(self, split: str) -> list[dict]:
        path = self.run.path("data") / f"{split}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def eval_rows(self) -> list[dict]:
        return [r for s in SUBSETS for r in self.rows(f"eval_{s}")]

    def _stage(self, stage: str, params: dict, fn) -> None:  # noqa: ANN001
        if self.run.is_done(stage, params):
            log.info("stage %s is done, skipping", stage)
            return
        with self.run.writing(stage, params) as tmp:
            fn(tmp)

    def run_all(self, stages: tuple[str, ...] = STAGES) -> None:
        for s in stages:
            if s not in STAGES:
                raise ValueError(f"unknown stage {s!r}; valid: {', '.join(STAGES)}")
            getattr(self, s)()

    # ---------------------------------------------------------------- stages
    def data(self) -> None:
        c = self.config

        def fn(tmp: Path) -> None:
            splits = make_calc_splits(n_train=c.n_train, n_eval_per_subset=c.n_eval, seed=c.seed)
            for name, rows in splits.items():
                (tmp / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            save_json(tmp / "counts.json", {k: len(v) for k, v in splits.items()})

        self._stage("data", c.subset("n_train", "n_eval", "seed"), fn)

    def finetune(self) -> None:
        from .finetune import generate_calls, lora_finetune, save_model_dir, subset_metrics

        c = self.config
        params = c.subset(
            "model",
            "seed",
            "n_train",
            "lora_rank",
            "lora_targets",
            "lora_layers",
            "lora_examples",
            "lora_lr",
            "lora_batch",
            "n_eval",
            "max_new_tokens",
        )

        def fn(tmp: Path) -> None:
            from ..models import load_model

            ev = self.eval_rows()
            lm = load_model(c.model, device=c.device)
            before = generate_calls(
                lm,
                ev,
                max_new_tokens=c.max_new_tokens,
                batch_size=c.gen_batch,
                progress=self.progress,
                desc="base model",
            )
            train = self.rows("train")[: c.lora_examples]
            hist = lora_finetune(
                lm,
                train,
                rank=c.lora_rank,
                targets=c.lora_targets,
                layers=c.lora_layers,
                epochs=1.0,
                batch_size=c.lora_batch,
                lr=c.lora_lr,
                seed=c.seed,
                progress=self.progress,
            )
            after = generate_calls(
                lm,
                ev,
                max_new_tokens=c.max_new_tokens,
                batch_size=c.gen_batch,
                progress=self.progress,
                desc="finetuned model",
            )
            save_model_dir(lm, tmp / "model")
            save_json(
                tmp / "finetune.json",
                {
                    "loss": hist["loss"],
                    "steps": hist["steps"],
                    "n_examples": len(train),
                    "before": subset_metrics(ev, before),
                    "after": subset_metrics(ev, after),
                },
            )
            _write_jsonl(tmp / "generations.jsonl", ev, {"base model": before, "finetuned": after})
            from ..eval.plots import line_sweep

            line_sweep(
                range(1, len(hist["loss"]) + 1),
                {"train loss": hist["loss"]},
                tmp / "loss.png",
                title="LoRA finetune loss (completion tokens)",
                xlabel="step",
                ylabel="nats/token",
            )

        self._stage("finetune", params, fn)

    def _pairs(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        from .splice_eval import mlp_pairs

        c = self.config
        texts = general_prompts(c.n_general, c.seed) + calc_conversations(self.rows("train"))
        return mlp_pairs(self.model(which), texts, c.layer, progress=self.progress)

    def base(self) -> None:
        from .splice_eval import cross_entropy, transcoder_splice
        from .train import tail_mean, train_transcoder
        from .transcoder import Transcoder, save_transcoder

        c = self.config
        params = c.subset(
            "model",
            "seed",
            "layer",
            "n_general",
            "n_train",
            "d_sae",
            "activation",
            "k",
            "init_l0",
            "sparsity",
            "steps",
            "batch_size",
            "lr",
            "n_eval",
        )

        def fn(tmp: Path) -> None:
            lm = self.model("base")
            x, y = self._pairs("base")
            tc = Transcoder(lm.hidden_size, c.d_sae, activation=c.activation, k=c.k, seed=c.seed)
            hist = train_transcoder(
                tc,
                x,
                y,
                steps=c.steps,
                batch_size=c.batch_size,
                lr=c.lr,
                sparsity_coef=c.sparsity,
                seed=c.seed,
                init_l0=c.init_l0,
                progress=self.progress,
            )
            save_transcoder(
                tc,
                tmp / "transcoder",
                extra={"layer": c.layer, "model": lm.name, "hook": "mlp_in -> mlp (steerlab sites)"},
            )
            # splice cost on held-out text the transcoder never saw: the eval prompts with their target completions
            held = calc_conversations(self.eval_rows())
            raw = cross_entropy(lm, held, chat=True)
            with transcoder_splice(lm, c.layer, tc):
                spliced = cross_entropy(lm, held, chat=True)
            save_json(
                tmp / "base.json",
                {
                    "train_nmse": tail_mean(hist, "nmse"),
                    "l0": tail_mean(hist, "l0"),
                    "n_train_tokens": int(x.shape[0]),
                    "ce_raw": float(raw.mean()),
                    "ce_spliced": float(spliced.mean()),
                    "ce_increase": bootstrap_mean((spliced - raw).numpy(), seed=c.seed),
                    "n_eval_tokens": int(raw.numel()),
                },
            )

        self._stage("base", params, fn)

    def delta(self) -> None:
        from .train import tail_mean, train_transcoder
        from .transcoder import DeltaTranscoder, load_transcoder, save_transcoder

        c = self.config
        params = {
            **self.run_params("base"),
            **c.subset(
                "d_new",
                "delta_activation",
                "delta_init_l0",
                "delta_sparsity",
                "delta_steps",
                "lora_layers",
                "lora_lr",
            ),
        }

        def fn(tmp: Path) -> None:
            out = {}
            for which, name in (("finetuned", "delta"), ("base", "control_delta")):
                base_tc = load_transcoder(self.run.path("base") / "transcoder")
                x, y = self._pairs(which)
                d = DeltaTranscoder(base_tc, c.d_new, seed=c.seed + 1, activation=c.delta_activation)
                hist = train_transcoder(
                    d,
                    x,
                    y,
                    steps=c.delta_steps,
                    batch_size=c.batch_size,
                    lr=c.lr,
                    sparsity_coef=c.delta_sparsity,
                    seed=c.seed,
                    init_l0=c.delta_init_l0,
                    progress=self.progress,
                )
                with torch.no_grad():
                    nmse0 = float((d(x[:20000], 0.0)[0] - y[:20000]).pow(2).sum(-1).mean() / y.var(0).sum())
                save_transcoder(d, tmp / name, extra={"layer": c.layer, "trained_on": which})
                out[name] = {
                    "trained_on": which,
                    "nmse_base_only": nmse0,
                    "nmse_with_delta": tail_mean(hist, "nmse"),
                    "delta_l0": tail_mean(hist, "l0"),
                }
            save_json(tmp / "delta.json", out)

        self._stage("delta", params, fn)

    def run_params(self, stage: str) -> dict:
        marker = self.run.path(stage) / "_DONE.json"
        if not marker.is_file():
            raise FileNotFoundError(f"stage {stage!r} has not finished in {self.root}; run it first")
        return {f"{stage}_params": load_json(marker)["params"]}

    def conditions(self) -> dict[str, tuple[str, float]]:
        """name -> (transcoder: none/base/delta/control_delta, alpha), all on the finetuned model."""
        c = self.config
        conds: dict[str, tuple[str, float]] = {
            "finetuned (no splice)": ("none", 0.0),
            "base only (alpha=0)": ("base", 0.0),
        }
        for a in c.alphas:
            if a != 0:
                conds[f"base + {a:g}*delta"] = ("delta", a)
        conds["base + 1*control delta"] = ("control_delta", 1.0)
        return conds

    def evaluate(self) -> None:
        from .finetune import generate_calls, subset_metrics
        from .scoring import SpliceRecorder, completion_ce
        from .transcoder import load_transcoder

        c = self.config
        params = {
            **self.run_params("delta"),
            **self.run_params("finetune"),
            **c.subset("alphas", "max_new_tokens"),
        }

        def fn(tmp: Path) -> None:
            lm = self.model("finetuned")
            ev = self.eval_rows()
            tcs = {
                n: load_transcoder(self.run.path(s) / t)
                for n, s, t in (
                    ("base", "base", "transcoder"),
                    ("delta", "delta", "delta"),
                    ("control_delta", "delta", "control_delta"),
                )
            }
            results, gens = {}, {}
            for name, (kind, alpha) in self.conditions().items():
                res: dict = {}
                ce = {}
                for sub in SUBSETS:
                    rows = [r for r in ev if r["subset"] == sub]
                    rec = SpliceRecorder(lm, c.layer, tcs[kind], alpha) if kind != "none" else None
                    if rec is None:
                        vals = completion_ce(lm, rows)
                    else:
                        with rec:
                            vals = completion_ce(lm, rows)
                    ce[sub] = {
                        "ce": bootstrap_mean(vals.numpy(), seed=c.seed),
                        **(rec.stats() if rec else {}),
                    }
                rec = SpliceRecorder(lm, c.layer, tcs[kind], alpha) if kind != "none" else None
                texts = generate_calls(
                    lm,
                    ev,
                    max_new_tokens=c.max_new_tokens,
                    batch_size=c.gen_batch,
                    context=rec,
                    progress=self.progress,
                    desc=name,
                )
                gm = subset_metrics(ev, texts)
                for sub in SUBSETS:
                    res[sub] = {**gm[sub], **ce[sub]}
                results[name] = {"transcoder": kind, "alpha": alpha, "subsets": res}
                gens[name] = texts
            base_model = load_json(self.run.path("finetune") / "finetune.json")["before"]
            save_json(tmp / "evaluate.json", {"conditions": results, "base_model_no_splice": base_model})
            _write_jsonl(tmp / "generations.jsonl", ev, gens)

        self._stage("evaluate", params, fn)

    def attribute(self) -> None:
        """Rank delta latents by how much more they fire on tool than on copy prompts at the decision token (on
        TRAIN prompts), then ablate the top ones on the held-out sets."""
        from ..capture import capture
        from .finetune import generate_calls, subset_metrics
        from .scoring import SpliceRecorder, decision_logprob
        from .transcoder import load_transcoder

        c = self.config
        params = {**self.run_params("delta"), **c.subset("top_latents")}

        def fn(tmp: Path) -> None:
            lm = self.model("finetuned")
            d = load_transcoder(self.run.path("delta") / "delta")
            marker = lm.tokenizer("<tool_call>", add_special_tokens=False)["input_ids"][0]

            def dec_acts(rows: list[dict]) -> torch.Tensor:
                acts = capture(
                    lm,
                    [[{"role": "user", "content": r["prompt"]}] for r in rows],
                    [c.layer],
                    sites=["mlp_in"],
                    positions="last",
                    chat=True,
                    progress=False,
                )
                x = torch.stack([a.reshape(-1) for a in acts[(c.layer, "mlp_in")]]).float()
                with torch.no_grad():
                    return d.delta.encode(x)

            train = self.rows("train")
            a_tool = dec_acts([r for r in train if r["subset"] == "tool"])
            a_copy = dec_acts([r for r in train if r["subset"] == "copy"])
            score = a_tool.mean(0) - a_copy.mean(0)
            top = [int(i) for i in score.argsort(descending=True)[: c.top_latents]]
            ev = {s: self.rows(f"eval_{s}") for s in SUBSETS}
            held = {s: dec_acts(ev[s]) for s in SUBSETS}
            per_latent = []
            for i in range(c.d_new):
                per_latent.append(
                    {
                        "latent": i,
                        "train_tool_minus_copy": float(score[i]),
                        **{f"mean_act_{s}": float(held[s][:, i].mean()) for s in SUBSETS},
                        **{f"fire_rate_{s}": float((held[s][:, i] > 0).float().mean()) for s in SUBSETS},
                    }
                )

            def lp(mask: torch.Tensor | None, sub: str) -> float:
                with SpliceRecorder(lm, c.layer, d, 1.0, delta_mask=mask):
                    return float(decision_logprob(lm, ev[sub], marker).mean())

            full = {s: lp(None, s) for s in ("tool", "copy")}
            ablations = []
            for i in top:
                m = torch.ones(c.d_new)
                m[i] = 0
                ablations.append({"latent": i, **{f"logp_marker_{s}": lp(m, s) for s in ("tool", "copy")}})
            m_top = torch.ones(c.d_new)
            m_top[top] = 0
            m_only = 1 - m_top
            joint = {}
            for name, m in (("top ablated", m_top), ("only top kept", m_only)):
                rows = ev["tool"] + ev["copy"]
                texts = generate_calls(
                    lm,
                    rows,
                    max_new_tokens=c.max_new_tokens,
                    batch_size=c.gen_batch,
                    context=SpliceRecorder(lm, c.layer, d, 1.0, delta_mask=m),
                    progress=self.progress,
                    desc=name,
                )
                joint[name] = {
                    "logp_marker": {s: lp(m, s) for s in ("tool", "copy")},
                    "generation": subset_metrics(rows, texts),
                }
            save_json(
                tmp / "attribute.json",
                {
                    "top_latents": top,
                    "logp_marker_full_delta": full,
                    "single_ablations": ablations,
                    "joint": joint,
                    "per_latent": per_latent,
                    "marker_token_id": marker,
                },
            )

        self._stage("attribute", params, fn)

    def report(self) -> None:
        from .report import write_report

        write_report(self.root)


def _write_jsonl(path: Path, rows: list[dict], outputs: dict[str, list[str]]) -> None:
    with open(path, "w") as f:
        for i, r in enumerate(rows):
            f.write(
                json.dumps(
                    {"prompt": r["prompt"], "subset": r["subset"], **{k: v[i] for k, v in outputs.items()}}
                )
                + "\n"
            )
