"""tfalign.smoothing: the package's one-euro filter against the vectors the Android and iOS cores also check."""
import json
import pathlib

import numpy as np
import pytest

from tfalign.smoothing import DEFAULTS, LandmarkSmoother, OneEuroFilter, object_scale

GOLDEN = json.loads((pathlib.Path(__file__).parent / "golden" / "one_euro.json").read_text())
TOL = GOLDEN["tolerance"]


def test_defaults_are_the_ones_the_apps_use():
    assert DEFAULTS == GOLDEN["defaults"]


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=[c["name"] for c in GOLDEN["cases"]])
def test_scalar_cases_match_the_shared_vectors(case):
    f = OneEuroFilter(**case["params"])
    got = [float(f(t, x, s)) for t, x, s in zip(case["timestamps_s"], case["inputs"], case["value_scale"])]
    np.testing.assert_allclose(got, case["expected"], rtol=0, atol=TOL)


@pytest.mark.parametrize("case", GOLDEN["landmark_cases"], ids=[c["name"] for c in GOLDEN["landmark_cases"]])
def test_landmark_cases_match_the_shared_vectors(case):
    smooth = LandmarkSmoother(**case["params"])
    got = [smooth(t, frame).reshape(-1) for t, frame in zip(case["timestamps_s"], case["frames"])]
    np.testing.assert_allclose(got, case["expected"], rtol=0, atol=TOL)


def test_array_filter_equals_independent_scalar_filters():
    rng = np.random.default_rng(3)
    xs = rng.normal(0, 5, (25, 4, 2)).cumsum(0)
    ts = np.cumsum(rng.uniform(0.01, 0.05, 25))
    vec = OneEuroFilter(0.5, 2.0, 1.5)
    scalars = [OneEuroFilter(0.5, 2.0, 1.5) for _ in range(8)]
    for t, x in zip(ts, xs):
        got = vec(t, x, 0.7)
        expected = [f(t, v, 0.7) for f, v in zip(scalars, x.reshape(-1))]
        np.testing.assert_allclose(got.reshape(-1), np.ravel(expected), rtol=0, atol=1e-12)


def test_smoothing_reduces_jitter_on_a_still_face_and_follows_a_moving_one():
    rng = np.random.default_rng(0)
    face = np.array([[0.0, 0.0], [200.0, 0.0], [100.0, 200.0]])  # a 200-px face at 30 fps
    smooth = LandmarkSmoother()
    still = [smooth(k / 30, face + rng.normal(0, 1.0, face.shape)) for k in range(90)]
    assert np.std(np.array(still[30:]) - face) < 0.75  # raw jitter: 1 px
    smooth.reset()
    moving = [smooth(k / 30, face + [k * 10.0, 0.0]) for k in range(30)]
    assert abs(moving[-1][0, 0] - 29 * 10.0) < 2.0  # 10 px per frame, lag well under a frame


def test_reset_makes_the_next_sample_pass_through():
    f = OneEuroFilter()
    f(0.0, 1.0)
    f(0.1, 2.0)
    f.reset()
    assert float(f(0.2, 50.0)) == 50.0


@pytest.mark.parametrize("kwargs", [{"min_cutoff": 0}, {"d_cutoff": -1}, {"beta": -0.1},
                                    {"beta": float("nan")}, {"min_cutoff": "1"}])
def test_bad_parameters_name_themselves(kwargs):
    with pytest.raises(ValueError, match="one-euro"):
        OneEuroFilter(**kwargs)


def test_bad_points_and_shape_changes_are_refused():
    smooth = LandmarkSmoother()
    with pytest.raises(ValueError, match=r"points: expected an \[N, 2\]"):
        smooth(0.0, np.zeros((3, 3)))
    smooth(0.0, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="reset"):
        smooth(0.1, np.zeros((4, 2)))


def test_object_scale_is_the_mean_box_side():
    assert object_scale([[0, 0], [10, 0], [0, 30]]) == 20.0


def test_docstring_examples_run():
    import doctest

    import tfalign.smoothing
    result = doctest.testmod(tfalign.smoothing, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0
