import numpy as np
import pytest

from tfalign.data import targets


def test_gaussian_peak_is_at_the_point_at_any_resolution():
    # Map pixel 5 of a 16-wide map has u = 5.5 / 16; the same u is pixel 2.25 of a 8-wide (stride 2) map.
    pts = np.array([[[5.5 / 16, 9.5 / 16]]], np.float32)
    hm = targets.gaussian_heatmaps(pts, 16, 16, sigma=1.0).numpy()
    assert hm.shape == (1, 16, 16, 1)
    assert np.unravel_index(np.argmax(hm[0, :, :, 0]), (16, 16)) == (9, 5)
    assert hm[0, 9, 5, 0] == pytest.approx(1.0)
    assert hm[0, 9, 6, 0] == pytest.approx(np.exp(-0.5), rel=1e-5)
    small = targets.gaussian_heatmaps(pts, 8, 8, sigma=1.0).numpy()[0, :, :, 0]
    ys, xs = np.mgrid[0:8, 0:8]
    w = small / small.sum()
    # Sub-pixel: the map's centroid sits at u * 8 - 0.5 (edges truncate the tail a little).
    assert (w * xs).sum() == pytest.approx(5.5 / 2 - 0.5, abs=0.05)
    assert (w * ys).sum() == pytest.approx(9.5 / 2 - 0.5, abs=0.05)


def test_gaussian_mask_zeroes_unannotated_points():
    pts = np.full((2, 3, 2), 0.5, np.float32)
    mask = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
    hm = targets.gaussian_heatmaps(pts, 8, 8, sigma=1.5, mask=mask).numpy()
    np.testing.assert_array_equal(hm.max(axis=(1, 2)) > 0, mask > 0)
    with pytest.raises(ValueError, match="sigma"):
        targets.gaussian_heatmaps(pts, 8, 8, sigma=0)


def test_pip_targets_hand_computed():
    # 8x8 map; point 0 at (0.3, 0.55) → scaled (2.4, 4.4), cell (2, 4), offset (0.4, 0.4).
    # point 1 at (0.6, 0.1) → (4.8, 0.8), cell (4, 0); point 2 outside the map at (1.2, -0.1) → cell (7, 0).
    pts = np.array([[[0.3, 0.55], [0.6, 0.1], [1.2, -0.1]]], np.float32)
    nb = np.array([[1, 2], [0, 2], [1, 0]], np.int32)
    t = {k: v.numpy() for k, v in targets.pip_targets(pts, 8, 8, nb).items()}
    assert t["score"].shape == (1, 8, 8, 3) and t["neighbor_x"].shape == (1, 8, 8, 6)
    for i, (cx, cy) in enumerate([(2, 4), (4, 0), (7, 0)]):
        assert t["score"][0, :, :, i].sum() == 1 and t["score"][0, cy, cx, i] == 1
    assert t["offset_x"][0, 4, 2, 0] == pytest.approx(0.4, abs=1e-5)
    assert t["offset_y"][0, 4, 2, 0] == pytest.approx(0.4, abs=1e-5)
    assert t["offset_x"][0, 0, 7, 2] == pytest.approx(9.6 - 7, abs=1e-5)
    assert t["offset_y"][0, 0, 7, 2] == pytest.approx(-0.8, abs=1e-5)
    assert np.count_nonzero(t["offset_x"][..., 0]) == 1
    # Channel i*K + j: neighbour j of landmark i, relative to landmark i's cell (2, 4).
    assert t["neighbor_x"][0, 4, 2, 0] == pytest.approx(4.8 - 2, abs=1e-5)
    assert t["neighbor_y"][0, 4, 2, 0] == pytest.approx(0.8 - 4, abs=1e-5)
    assert t["neighbor_x"][0, 4, 2, 1] == pytest.approx(9.6 - 2, abs=1e-5)
    assert t["neighbor_x"][0, 0, 4, 2] == pytest.approx(2.4 - 4, abs=1e-5)  # landmark 1, neighbour 0
    np.testing.assert_array_equal(t["neighbor_mask"], 1.0)


def test_pip_targets_respect_the_mask():
    pts = np.array([[[0.3, 0.55], [0.6, 0.1]]], np.float32)
    t = targets.pip_targets(pts, 4, 4, [[1], [0]], mask=[[1.0, 0.0]])
    assert t["score"].numpy()[..., 1].sum() == 0 and t["score"].numpy()[..., 0].sum() == 1
    np.testing.assert_array_equal(t["neighbor_x"].numpy(), 0.0)  # the only neighbour pairs touch point 1
    np.testing.assert_array_equal(t["neighbor_mask"].numpy(), [[0.0, 0.0]])


def test_pip_targets_run_inside_tf_data():
    from tfalign._keras import tf
    pts = np.random.default_rng(0).uniform(0, 1, (4, 5, 2)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices(pts).batch(2).map(lambda p: targets.pip_targets(p, 8, 8, [[1], [2], [3],
                                                                                                     [4], [0]]))
    shapes = [b["score"].shape for b in ds]
    assert shapes == [(2, 8, 8, 5), (2, 8, 8, 5)]


def test_mean_shape_and_neighbors():
    shapes = np.array([[[0, 0], [1, 0], [5, 5]], [[2, 2], [3, 0], [9, 9]]], np.float32)
    np.testing.assert_allclose(targets.mean_shape(shapes), [[1, 1], [2, 0], [7, 7]])
    mask = np.array([[1, 1, 0], [0, 1, 1]])
    np.testing.assert_allclose(targets.mean_shape(shapes, mask), [[0, 0], [2, 0], [9, 9]])
    with pytest.raises(ValueError, match=r"points \[0\]"):
        targets.mean_shape(shapes, [[0, 1, 1], [0, 1, 1]])
    line = np.array([[0, 0], [1, 0], [3, 0], [7, 0]], np.float32)
    np.testing.assert_array_equal(targets.nearest_neighbors(line, 2), [[1, 2], [0, 2], [1, 0], [2, 1]])
    with pytest.raises(ValueError, match="k must be"):
        targets.nearest_neighbors(line, 4)
