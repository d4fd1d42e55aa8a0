import numpy as np
import pytest

from steerlab.eval import (
    bootstrap_mean,
    bootstrap_metric,
    mcnemar_exact,
    metrics_with_ci,
    paired_bootstrap_diff,
    trigger_metrics,
    wilson_interval,
)


def _case():
    # tp=3 fp=1 tn=4 fn=2
    y = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    p = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    return np.array(y), np.array(p)


def test_trigger_metrics_exact():
    m = trigger_metrics(*_case())
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 1, 4, 2)
    assert m["precision"] == 0.75 and m["recall"] == 0.6 and m["fpr"] == 0.2 and m["accuracy"] == 0.7
    assert m["f1"] == pytest.approx(2 / 3)
    none = trigger_metrics([1, 0], [0, 0])
    assert np.isnan(none["precision"]) and none["f1"] == 0.0 and none["recall"] == 0.0  # no calls: undefined
    assert np.isnan(trigger_metrics([0, 0], [0, 0])["recall"])  # no positives: recall undefined
    ci = metrics_with_ci([1, 0, 1, 0], [0, 0, 0, 0], n_boot=200)
    assert all(np.isnan(x) for x in ci["precision"]) and ci["f1"][0] == 0.0
    with pytest.raises(ValueError, match="y_true has"):
        trigger_metrics([1, 0], [1])
    with pytest.raises(ValueError, match="0/1"):
        trigger_metrics([2, 0], [1, 0])


def test_bootstrap_intervals():
    y, p = _case()
    point, lo, hi = bootstrap_metric("f1", y, p, seed=1)
    assert point == pytest.approx(2 / 3) and lo <= point <= hi
    assert bootstrap_metric("f1", y, p, seed=1) == (point, lo, hi)
    big = bootstrap_metric("f1", np.tile(y, 20), np.tile(p, 20), seed=1)
    assert big[2] - big[1] < hi - lo
    m = metrics_with_ci(y, p, n_boot=500)
    assert m["precision"][0] == 0.75 and m["tp"] == 3
    mean, mlo, mhi = bootstrap_mean([1.0, 2.0, 3.0])
    assert mean == 2.0 and mlo <= 2.0 <= mhi


def test_paired_diff_and_mcnemar():
    y, p = _case()
    assert paired_bootstrap_diff("f1", y, p, p) == (0.0, 0.0, 0.0, 1.0)
    d, lo, hi, pval = paired_bootstrap_diff("recall", y, p, y)  # perfect b
    assert d == pytest.approx(0.4) and lo <= d <= hi and pval < 0.5
    assert mcnemar_exact([1, 1, 1, 1, 1], [0, 0, 0, 0, 0]) == (5, 0, 0.0625)
    assert mcnemar_exact([1, 0, 1, 0], [0, 1, 0, 1])[2] == 1.0
    assert mcnemar_exact([1, 1], [1, 1]) == (0, 0, 1.0)


def test_wilson():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="k=3, n=2"):
        wilson_interval(3, 2)


def test_plots_write_pngs(tmp_path):
    from steerlab.eval.plots import bar_with_ci, grouped_bars_with_ci, heatmap, line_sweep

    paths = [
        bar_with_ci(["a", "b"], [0.5, 0.6], [0.4, 0.5], [0.6, 0.7], tmp_path / "bar.png"),
        grouped_bars_with_ci(["x", "y"], {"s": ([0.1, 0.2], [0.0, 0.1], [0.2, 0.3])}, tmp_path / "g.png"),
        line_sweep([0, 1, 2], {"auc": [0.5, 0.7, 0.9]}, tmp_path / "l.png", mark_x=2),
        heatmap([[0.1, 0.2], [0.3, 0.4]], ["r1", "r2"], ["c1", "c2"], tmp_path / "h.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
