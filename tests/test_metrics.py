import numpy as np
import pytest

from tfalign import metrics


def _face68():
    g = np.zeros((68, 2))
    g[:, 0] = np.linspace(0, 30, 68)
    g[:, 1] = np.linspace(0, 40, 68)[::-1]
    g[36:42] = [0, 10]
    g[42:48] = [20, 10]
    g[36] = [-2, 10]   # outer corners 26 apart
    g[45] = [24, 10]
    return g


def test_inter_ocular_and_inter_pupil_hand_computed():
    g = _face68()
    p = g.copy()
    p[10] += [3.4, 0.0]  # one point off by 3.4: mean error 3.4 / 68 = 0.05
    assert metrics.nme(p, g, "300w_68", "inter_ocular") == pytest.approx([0.05 / 26])
    # Eye centres: left = (5 * 0 - 2) / 6, right = (5 * 20 + 24) / 6 → distance (124 + 2) / 6 = 21.
    assert metrics.nme(p, g, "300w_68", "inter_pupil") == pytest.approx([0.05 / 21])


def test_box_norms_and_mask():
    g = _face68()  # tight box: x from -2 to 30, y from 0 to 40 → 32 x 40
    p = g + [0.0, 2.0]
    assert metrics.nme(p, g, "300w_68", "bbox") == pytest.approx([2.0 / np.sqrt(32 * 40)])
    assert metrics.nme(p, g, "300w_68", "diagonal") == pytest.approx([2.0 / np.hypot(32, 40)])
    p2 = g.copy()
    p2[0] += [100, 0]
    mask = np.ones(68)
    mask[0] = 0
    assert metrics.nme(p2, g, "300w_68", mask=mask) == pytest.approx([0.0])
    assert metrics.nme(p2, g, "300w_68")[0] == pytest.approx(100 / 68 / 26)


def test_batches_and_five_points():
    g = np.array([[[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]]] * 3, np.float64)
    p = g + np.array([0.0, 0.0, 2.0])[:, None, None] * [1, 0]
    np.testing.assert_allclose(metrics.nme(p, g, "mtfl_5", "inter_pupil"), [0, 0, 2 / 20])


def test_auc_fr_hand_computed():
    # step 0.05 on [0, 0.1]: CED = 0, 0.5, 1 → trapezoid area 0.05 * 0.25 + 0.05 * 0.75 = 0.05 → AUC 0.5
    assert metrics.auc_fr([0.02, 0.07], threshold=0.1, step=0.05) == pytest.approx((0.5, 0.0))
    auc, fr = metrics.auc_fr([0.0, 0.05, 0.2])
    assert fr == pytest.approx(1 / 3)
    assert auc == pytest.approx(0.5, abs=1e-3)
    assert metrics.auc_fr(np.zeros(5)) == pytest.approx((1.0, 0.0))
    assert metrics.auc_fr(np.full(5, 0.3)) == pytest.approx((0.0, 1.0))
    xs, ys = metrics.ced_curve([0.02, 0.07], 0.1, 0.05)
    np.testing.assert_allclose(xs, [0, 0.05, 0.1])
    np.testing.assert_allclose(ys, [0, 0.5, 1])


def test_ced_plot_writes_a_png(tmp_path):
    out = tmp_path / "ced.png"
    metrics.ced_plot({"a": [0.01, 0.05], "b": [0.03, 0.2]}, str(out), title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in tmp_path.iterdir()] == ["ced.png"]


@pytest.mark.parametrize("call, match", [
    (lambda: metrics.nme(np.zeros((2, 68, 2)), np.zeros((3, 68, 2)), "300w_68"), "pred and gt"),
    (lambda: metrics.nme(np.zeros((5, 2)), np.zeros((5, 2)), "300w_68"), "scheme 300w_68 has 68"),
    (lambda: metrics.nme(_face68(), _face68(), "300w_68", norm="eyes"), "norm must be"),
    (lambda: metrics.nme(np.zeros((68, 2)), np.zeros((68, 2)), "300w_68"), "zero"),
    (lambda: metrics.nme(_face68(), _face68(), "300w_68", mask=np.zeros(68)), "no annotated point"),
    (lambda: metrics.auc_fr([]), "empty"),
    (lambda: metrics.auc_fr([np.nan]), "finite"),
    (lambda: metrics.auc_fr([0.1], threshold=0.1, step=0.5), "step"),
    (lambda: metrics.ced_plot({}, "x.png"), "curves"),
])
def test_bad_input_is_explained(call, match):
    with pytest.raises(ValueError, match=match):
        call()
