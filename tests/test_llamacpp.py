"""A steerlab-exported control vector in llama.cpp itself moves the next-token distribution the way steerlab does.

Opt-in: set STEERLAB_LLAMACPP=1 and install ``llama-cpp-python`` (it compiles llama.cpp: about 20-30 minutes on 2
cores; see docs/portability.md). llama-cpp-python wraps only the low-level ``llama_set_adapter_cvec``; the GGUF
control-vector loader lives in llama.cpp's ``common`` library, which it does not wrap. So the test writes the
file with ``steerlab gguf export``'s code, reads it back, packs its tensors into the flat buffer that
``common_control_vector_load_one`` builds (``llamacpp_buffer``: direction.N at offset (N-1)*n_embd) and hands that
buffer to ``llama_set_adapter_cvec(ctx, buf, len, n_embd, 1, n_layer)``, as ``common_init_from_params`` does.

Both engines run the embedded SmolLM2-135M GGUF (llama.cpp on its Q4_1 kernels, transformers on the de-quantised
fp32 weights), so exact equality is not expected; the test prints top tokens and KL figures and asserts that
- the change of log-probabilities that steering causes is highly correlated between the engines, and
- llama.cpp's ``direction.N`` matches steerlab's layer N better than layers N-1 and N+1: the mapping from the source
  (direction.N is added to the output of block N) holds in the running engine.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(os.environ.get("STEERLAB_LLAMACPP") != "1", reason="opt-in: set STEERLAB_LLAMACPP=1"),
]

LAYER, ALPHA = 15, 0.4
PROMPT = "Write one sentence about your weekend."


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    lp, lq = torch.log_softmax(p_logits.double(), -1), torch.log_softmax(q_logits.double(), -1)
    return float((lp.exp() * (lp - lq)).sum())


def _top(tok, logits: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
    p = torch.softmax(logits.double(), -1)
    vals, idx = p.topk(k)
    return [(tok.decode([int(i)]), round(float(v), 3)) for v, i in zip(vals, idx)]


def test_llamacpp_control_vector_moves_like_steerlab(smollm, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    from peer_data import contrast_pairs
    from steerlab.assets.gguf_cvec import export_control_vector, llamacpp_buffer, read_control_vector
    from steerlab.assets.vector_asset import SteeringVectorAsset, save_vector_asset
    from steerlab.capture import capture, mean_norm
    from steerlab.models import render_prompts, tokenize_texts
    from steerlab.vectors.estimators import mean_difference

    lm = smollm
    pairs = contrast_pairs(32)
    pos = capture(lm, [p for p, _ in pairs], layers=[LAYER], chat=False, progress=False)[LAYER]
    neg = capture(lm, [n for _, n in pairs], layers=[LAYER], chat=False, progress=False)[LAYER]
    v = mean_difference(pos, neg)
    coef = ALPHA * mean_norm(torch.cat([pos, neg]))
    text = render_prompts(lm.tokenizer, [PROMPT], chat=True)[0]
    ids = tokenize_texts(lm.tokenizer, [text])[0]

    def hf_logits(asset: SteeringVectorAsset | None) -> torch.Tensor:
        with torch.no_grad():
            if asset is None:
                return lm.model(input_ids=torch.tensor([ids])).logits[0, -1]
            with asset.apply(lm):
                return lm.model(input_ids=torch.tensor([ids])).logits[0, -1]

    llm = llama_cpp.Llama(
        model_path=lm.source["path"], n_ctx=256, n_threads=2, verbose=False, logits_all=True
    )
    n_layer, n_embd = llama_cpp.llama_model_n_layer(llm.model), llm.n_embd()
    assert (n_layer, n_embd) == (lm.n_layers, lm.hidden_size)

    def cpp_logits(layer: int | None) -> torch.Tensor:
        if layer is None:
            rc = llama_cpp.llama_set_adapter_cvec(llm.ctx, None, 0, n_embd, -1, -1)  # disable
        else:
            asset = SteeringVectorAsset(
                {layer: v}, coef=coef, policy="all", model=lm.name, n_layers=lm.n_layers
            )
            save_vector_asset(tmp_path / f"a{layer}", asset)
            export_control_vector(tmp_path / f"a{layer}", tmp_path / f"v{layer}.gguf")
            buf = llamacpp_buffer(read_control_vector(tmp_path / f"v{layer}.gguf"), n_layer)
            ptr = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            rc = llama_cpp.llama_set_adapter_cvec(llm.ctx, ptr, buf.size, n_embd, 1, n_layer)
        assert rc == 0
        llm.reset()
        llm.eval(ids)
        return torch.from_numpy(np.array(llm._scores[len(ids) - 1], dtype=np.float32))

    hf_plain, cpp_plain = hf_logits(None), cpp_logits(None)
    hf_steer = {
        k: hf_logits(SteeringVectorAsset({k: v}, coef=coef, policy="all"))
        for k in (LAYER - 1, LAYER, LAYER + 1)
    }
    cpp_steer = cpp_logits(LAYER)
    cpp_plain_again = cpp_logits(None)
    assert torch.allclose(cpp_plain_again, cpp_plain, atol=1e-4)  # the vector is really off again

    d_hf = torch.log_softmax(hf_steer[LAYER].double(), -1) - torch.log_softmax(hf_plain.double(), -1)
    d_cpp = torch.log_softmax(cpp_steer.double(), -1) - torch.log_softmax(cpp_plain.double(), -1)
    keep = torch.softmax(hf_plain.double(), -1).topk(200).indices
    keep = torch.unique(torch.cat([keep, torch.softmax(hf_steer[LAYER].double(), -1).topk(200).indices]))
    corr = float(torch.corrcoef(torch.stack([d_hf[keep], d_cpp[keep]]))[0, 1])
    figures = {
        "KL(HF plain || llama.cpp plain)": _kl(hf_plain, cpp_plain),
        "KL(HF steered || llama.cpp steered)": _kl(hf_steer[LAYER], cpp_steer),
        "KL(HF plain || HF steered)": _kl(hf_plain, hf_steer[LAYER]),
        "KL(llama.cpp plain || llama.cpp steered)": _kl(cpp_plain, cpp_steer),
        **{
            f"KL(HF steered at layer {k} || llama.cpp direction.{LAYER})": _kl(hf_steer[k], cpp_steer)
            for k in hf_steer
        },
        "corr(delta log p HF, delta log p llama.cpp), top-200 tokens": corr,
    }
    tok = lm.tokenizer
    print(
        f"\nprompt {PROMPT!r}; vector at layer {LAYER}, coef {coef:.2f} (= {ALPHA} x mean norm), policy all"
    )
    print("HF plain      ", _top(tok, hf_plain))
    print("llama.cpp plain", _top(tok, cpp_plain))
    print("HF steered    ", _top(tok, hf_steer[LAYER]))
    print("llama.cpp steered", _top(tok, cpp_steer))
    for name, val in figures.items():
        print(f"{name}: {val:.4f}")
    assert figures["KL(HF plain || HF steered)"] > 0.1  # the vector moves the distribution
    assert corr > 0.9
    assert figures["KL(HF steered || llama.cpp steered)"] < 0.25 * figures["KL(HF plain || HF steered)"]
    assert torch.equal(hf_steer[LAYER].argmax(), cpp_steer.argmax())
    matched = figures[f"KL(HF steered at layer {LAYER} || llama.cpp direction.{LAYER})"]
    for k in (LAYER - 1, LAYER + 1):
        assert matched < figures[f"KL(HF steered at layer {k} || llama.cpp direction.{LAYER})"]
