"""The one transcoder splice: MLP(layer) replaced by a (delta) transcoder at every position but BOS, in scoring and
generation alike, optionally counting what its latents do; and the pairs a transcoder is trained on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..capture import capture
from ..models import LoadedModel
from ..steering import SpliceHandle, splice
from .transcoder import DeltaTranscoder, Transcoder


class TranscoderSplice:
    """Replaces MLP(layer) by ``tc`` (a DeltaTranscoder gives base + scale * delta; ``delta_mask`` zeroes chosen
    delta latents) and sums |base acts|, base L0, |delta acts| and delta L0 over the positions it replaces. A context
    manager; ``stats()`` gives the per-position means."""

    def __init__(
        self,
        lm: LoadedModel,
        layer: int,
        tc: Transcoder | DeltaTranscoder,
        scale: float = 1.0,
        delta_mask: torch.Tensor | None = None,
    ) -> None:
        self.tc, self.scale, self.mask = tc, scale, delta_mask
        self.n = 0
        self.base_l1 = self.base_l0 = self.delta_l1 = self.delta_l0 = 0.0
        self.handle: SpliceHandle = splice(lm, layer, self._fn)

    def _fn(self, inp: torch.Tensor, out: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = inp.float()
            if isinstance(self.tc, DeltaTranscoder):
                base_out, base_acts = self.tc.base(x)
                d_acts = self.tc.delta.encode(x)
                if self.mask is not None:
                    d_acts = d_acts * self.mask.to(d_acts.device)
                y = base_out + self.scale * (d_acts @ self.tc.delta.W_dec) if self.scale else base_out
                self.delta_l1 += float(d_acts.abs().sum(-1)[valid].sum())
                self.delta_l0 += float((d_acts > 0).sum(-1)[valid].sum())
            else:
                y, base_acts = self.tc(x)
            self.base_l1 += float(base_acts.abs().sum(-1)[valid].sum())
            self.base_l0 += float((base_acts != 0).sum(-1)[valid].sum())
            self.n += int(valid.sum())
        return y.to(out.dtype)

    def stats(self) -> dict:
        n = max(1, self.n)
        return {
            "mean_abs_base_acts": self.base_l1 / n,
            "base_l0": self.base_l0 / n,
            "mean_abs_delta_acts": self.delta_l1 / n,
            "delta_l0": self.delta_l0 / n,
        }

    def remove(self) -> None:
        self.handle.remove()

    def __enter__(self) -> TranscoderSplice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class MultiSplice:
    """Several layers' MLPs replaced at once, one ``TranscoderSplice`` per layer: ``spec[layer] = (tc, scale,
    delta_mask or None)``. A context manager; ``stats()`` gives each layer's statistics."""

    def __init__(
        self,
        lm: LoadedModel,
        spec: Mapping[int, tuple[Transcoder | DeltaTranscoder, float, torch.Tensor | None]],
    ) -> None:
        self.splices: dict[int, TranscoderSplice] = {}
        try:
            for layer, (tc, scale, mask) in spec.items():
                self.splices[layer] = TranscoderSplice(lm, layer, tc, scale, delta_mask=mask)
        except Exception:
            self.remove()
            raise

    def stats(self) -> dict[int, dict]:
        return {layer: s.stats() for layer, s in self.splices.items()}

    def remove(self) -> None:
        for s in self.splices.values():
            s.remove()

    def __enter__(self) -> MultiSplice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def zero_mlp_splice(lm: LoadedModel, layer: int) -> SpliceHandle:
    """MLP(layer)'s output zeroed at every position but BOS: the yardstick a transcoder's splice cost is read
    against."""
    return splice(lm, layer, lambda inp, out, valid: torch.zeros_like(out))


def mlp_pairs(
    lm: LoadedModel, texts: Sequence, layer: int, batch_size: int = 16, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(MLP input after its norm, MLP output) at every token but the first of each text."""
    return mlp_pairs_at(lm, texts, [layer], batch_size, progress)[layer]


def mlp_pairs_at(
    lm: LoadedModel, texts: Sequence, layers: Sequence[int], batch_size: int = 16, progress: bool = True
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """``mlp_pairs`` at several layers from one forward per batch (it stops after the deepest)."""
    acts = capture(
        lm,
        texts,
        layers=list(layers),
        sites=["mlp_in", "mlp"],
        positions="all",
        batch_size=batch_size,
        progress=progress,
    )
    return {
        k: (torch.cat([a[1:] for a in acts[(k, "mlp_in")]]), torch.cat([a[1:] for a in acts[(k, "mlp")]]))
        for k in layers
    }
