"""The tool-use study's ``attribute`` stage: which delta latents carry the decision to call the calculator.

At the decision token (the last prompt token), per delta latent: the AUC of its activation on tool vs copy prompts;
then the smallest set S found greedily on TRAIN prompts such that keeping only S restores tool calls and ablating
S removes them, with S's rates reported on held-out prompts.
"""

from __future__ import annotations

import torch

from ..stages import StageContext
from .run_data import SUBSETS, finetuned_model, split_rows


def _greedy_set(
    pool: list[int],
    d_new: int,
    score: object,
    full_rate: float,
    keep_margin: float,
    ablate_max: float,
) -> tuple[list[int], list[dict], bool]:
    """Grow S one latent at a time, adding the one that most raises P(marker | only S kept) - P(marker | S
    ablated) on the scoring prompts, until keeping only S calls within ``keep_margin`` of the full delta's rate and
    ablating S leaves at most ``ablate_max`` (or the pool is used up). ``score(mask) -> (log P(marker), marker is
    the top token)`` per prompt, at the decision token."""
    chosen: list[int] = []
    steps: list[dict] = []
    while len(chosen) < len(pool):
        best = None
        for i in pool:
            if i in chosen:
                continue
            keep = torch.zeros(d_new)
            keep[[*chosen, i]] = 1.0
            pk, tk = score(keep)
            pa, ta = score(1.0 - keep)
            gain = float(pk.exp().mean() - pa.exp().mean())
            if best is None or gain > best["gain"]:
                best = {
                    "latent": i,
                    "gain": gain,
                    "keep_rate": float(tk.float().mean()),
                    "ablate_rate": float(ta.float().mean()),
                }
        chosen.append(best["latent"])
        steps.append({**best, "set": list(chosen)})
        if best["keep_rate"] >= full_rate - keep_margin and best["ablate_rate"] <= ablate_max:
            return chosen, steps, True
    return chosen, steps, False


def stage_attribute(ctx: StageContext) -> dict:
    """Specificity of the delta latents at ``layer``, at the decision token (the last prompt token): per latent, AUC
    of its activation on tool vs copy prompts; then the smallest set S found greedily on TRAIN prompts such that
    keeping only S restores tool calls and ablating S removes them; S's rates are reported on held-out prompts.
    With several spliced layers the others keep their full delta throughout."""
    from ..capture import capture
    from ..finetune import conversation
    from ..generation import next_token_scores
    from ..probes import roc_auc
    from ..tools import format_spec
    from .finetune import generate_calls, subset_metrics
    from .splice import MultiSplice
    from .transcoder import load_transcoder

    c = ctx.config
    lm = finetuned_model(ctx)
    layer, layers = c.layer, c.spliced()
    d = load_transcoder(ctx.path("delta") / f"delta_{layer}")
    others = {k: (load_transcoder(ctx.path("delta") / f"delta_{k}"), 1.0, None) for k in layers if k != layer}
    marker = lm.tokenizer(format_spec("calculator").marker, add_special_tokens=False)["input_ids"][0]
    n_lat = d.delta.d_sae

    def spec(mask: torch.Tensor | None) -> dict:
        return {**others, layer: (d, 1.0, mask)}

    def dec_acts(rows: list[dict]) -> torch.Tensor:
        with MultiSplice(lm, others):  # earlier spliced layers shape this layer's input
            acts = capture(
                lm,
                [conversation(r) for r in rows],
                [layer],
                sites=["mlp_in"],
                positions="last",
                chat=True,
                batch_size=c.gen_batch,
                progress=False,
            )
        with torch.no_grad():
            return d.delta.encode(acts[(layer, "mlp_in")].float())

    def score(rows: list[dict], mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        with MultiSplice(lm, spec(mask)):
            logp = next_token_scores(
                lm,
                [conversation(r) for r in rows],
                {"x": None},
                batch_size=c.gen_batch,
                chat=True,
                progress=False,
            )["x"]
        return logp[:, marker], logp.argmax(-1) == marker

    def aucs(pos: torch.Tensor, neg: torch.Tensor) -> list[float]:
        labels = [1] * len(pos) + [0] * len(neg)
        return [roc_auc(torch.cat([pos[:, i], neg[:, i]]), labels) for i in range(n_lat)]

    train = split_rows(ctx, "train")
    tool_tr = [r for r in train if r["subset"] == "tool"]
    copy_tr = [r for r in train if r["subset"] == "copy"]
    n_rank = 4 * c.search_prompts
    a_tool, a_copy = dec_acts(tool_tr[:n_rank]), dec_acts(copy_tr[:n_rank])
    auc_train = aucs(a_tool, a_copy)
    fires = (a_tool > 0).float().mean(0)
    ranked = sorted(range(n_lat), key=lambda i: (-auc_train[i], -float(fires[i])))
    pool = [i for i in ranked if float(fires[i]) > 0][: c.search_pool]

    search_tool, search_copy = tool_tr[: c.search_prompts], copy_tr[: c.search_prompts]
    _, full_top = score(search_tool, None)
    full_rate = float(full_top.float().mean())
    chosen, steps, met = _greedy_set(
        pool, n_lat, lambda m: score(search_tool, m), full_rate, c.keep_margin, c.ablate_max
    )
    keep = torch.zeros(n_lat)
    keep[chosen] = 1.0
    train_check = {
        "tool_full_delta": full_rate,
        "tool_only_set_kept": steps[-1]["keep_rate"] if steps else None,
        "tool_set_ablated": steps[-1]["ablate_rate"] if steps else None,
        "copy_full_delta": float(score(search_copy, None)[1].float().mean()),
        "copy_only_set_kept": float(score(search_copy, keep)[1].float().mean()),
    }

    ev = {s: split_rows(ctx, f"eval_{s}") for s in SUBSETS}
    held = {s: dec_acts(ev[s]) for s in SUBSETS}
    auc_tool = aucs(held["tool"], held["copy"])
    auc_ood = aucs(held["ood"], held["copy"])
    per_latent = [
        {
            "latent": i,
            "auc_train_tool_vs_copy": auc_train[i],
            "auc_tool_vs_copy": auc_tool[i],
            "auc_ood_vs_copy": auc_ood[i],
            **{f"mean_act_{s}": float(held[s][:, i].mean()) for s in SUBSETS},
            **{f"fire_rate_{s}": float((held[s][:, i] > 0).float().mean()) for s in SUBSETS},
        }
        for i in range(n_lat)
    ]
    rows = [r for s in SUBSETS for r in ev[s]]
    heldout = {}
    for name, mask in (("full delta", None), ("only the set kept", keep), ("the set ablated", 1.0 - keep)):
        entry: dict = {"logp_marker": {s: float(score(ev[s], mask)[0].mean()) for s in SUBSETS}}
        if mask is not None:
            texts = generate_calls(
                lm,
                rows,
                max_new_tokens=c.max_new_tokens,
                batch_size=c.gen_batch,
                context=MultiSplice(lm, spec(mask)),
                progress=ctx.progress,
                desc=name,
            )
            entry["generation"] = subset_metrics(rows, texts)
        heldout[name] = entry
    return {
        "layer": layer,
        "marker_token_id": marker,
        "pool": pool,
        "search": steps,
        "specific_set": chosen,
        "found": met,
        "train_check": train_check,
        "heldout": heldout,
        "per_latent": per_latent,
    }
