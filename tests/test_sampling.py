"""Row sampling at the edges of its inputs: a temperature so small that logits / t overflows is greedy, not NaN."""

import pytest
import torch

from steerlab.generation.sampling import RowSampler


@pytest.mark.parametrize("t", [1e-300, 1e-45, 5e-324])
def test_a_vanishing_temperature_is_greedy(t):
    logits = torch.tensor([[0.5, 3.0, -1.0, 2.9], [10.0, -2.0, 0.0, 9.0]])
    s = RowSampler(2, temperature=t, seed=[1, 2])
    assert s.pick(logits, [0, 1]).tolist() == [1, 0]


def test_sampling_with_masked_logits_stays_in_the_allowed_tokens():
    logits = torch.tensor([[-float("inf"), 1.0, -float("inf"), 1.0]])
    s = RowSampler(1, temperature=1.0, seed=0)
    picks = {int(s.pick(logits, [0])[0]) for _ in range(50)}
    assert picks == {1, 3}


def test_a_top_p_below_float32_range_keeps_the_likeliest_token():
    logits = torch.tensor([[0.1, 0.3, -0.2, 0.25]])
    s = RowSampler(1, temperature=4.75e-14, top_p=5e-324, seed=0)
    assert s.pick(logits, [0]).tolist() == [1]
    s = RowSampler(1, temperature=1.0, top_p=5e-324, seed=0)
    assert {int(s.pick(logits, [0])[0]) for _ in range(20)} == {1}
