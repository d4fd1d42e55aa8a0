"""What the tool-use study's stages read back from its run directory: the data stage's rows and the finetuned
model (shared by ``sae.stages`` and ``sae.attribution``)."""

from __future__ import annotations

import json

from ..stages import StageContext

SUBSETS = ("tool", "ood", "copy")
DATA = ("seed", "n_train", "n_eval")


def split_rows(ctx: StageContext, split: str) -> list[dict]:
    path = ctx.path("data") / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def eval_rows(ctx: StageContext) -> list[dict]:
    return [r for s in SUBSETS for r in split_rows(ctx, f"eval_{s}")]


def finetuned_model(ctx: StageContext):  # noqa: ANN202
    c = ctx.config
    return ctx.runner.models.get(str(ctx.path("finetune") / "model"), device=c.device, dtype=c.dtype)
