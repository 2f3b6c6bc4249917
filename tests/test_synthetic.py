import cv2
import numpy as np
import pytest

from tfalign import schemes
from tfalign.data import face3d
from tfalign.data.synthetic import make_records


@pytest.fixture(scope="module")
def faces():
    return make_records(12, seed=3, size=128)


def test_same_seed_same_faces_and_index_independent_of_n():
    a = make_records(3, seed=7, size=96)
    b = make_records(5, seed=7, size=96)
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra.image, rb.image)
        np.testing.assert_array_equal(ra.points, rb.points)
    c = make_records(3, seed=8, size=96)
    assert not np.array_equal(a[0].image, c[0].image)
    assert not np.allclose(a[0].points, c[0].points)


def test_records_are_well_formed(faces):
    for r in faces:
        assert r.image.shape == (128, 128, 3) and r.image.dtype == np.uint8
        assert r.scheme == "300w_68" and r.points.shape == (68, 2) and r.image_path == ""
        assert np.all(r.points > 0) and np.all(r.points < 127)
        assert r.visibility.shape == (68,)
        pitch, yaw, roll = np.rad2deg(r.attributes["pose_pyr"])
        assert abs(yaw) <= 60 and abs(pitch) <= 25 and abs(roll) <= 25
        assert r.attributes["occluded"] == bool(np.any(r.visibility == 0))
    yaws = [np.rad2deg(r.attributes["pose_pyr"][1]) for r in faces]
    assert max(yaws) - min(yaws) > 40  # the pose really varies
    assert any(r.attributes["occluded"] for r in make_records(20, seed=0, size=64))


def test_other_schemes_are_exact_conversions():
    r68 = make_records(2, seed=1, size=96)
    r5 = make_records(2, scheme="mtfl_5", seed=1, size=96)
    for a, b in zip(r68, r5):
        assert b.scheme == "mtfl_5"
        np.testing.assert_allclose(b.points, schemes.convert(a.points, "300w_68", "mtfl_5"), atol=1e-4)
        np.testing.assert_array_equal(a.image, b.image)


def test_pose_attribute_matches_solvepnp_on_the_mean_face(faces):
    # Identity and expression deform the face a little, so PnP on the mean face recovers the pose approximately;
    # a wrong rotation convention (sign of yaw, order of angles) would be off by tens of degrees.
    for r in faces:
        f, cx, cy = r.attributes["camera"]
        k = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], np.float64)
        ok, rvec, _ = cv2.solvePnP(np.asarray(face3d.MEAN_FACE_68, np.float64), r.points.astype(np.float64), k,
                                   None, flags=cv2.SOLVEPNP_ITERATIVE)
        assert ok
        est = np.rad2deg(face3d.rotation_to_pyr(cv2.Rodrigues(rvec)[0]))
        np.testing.assert_allclose(est, np.rad2deg(r.attributes["pose_pyr"]), atol=10.0)


def test_landmarks_sit_on_painted_features():
    # The pupil (dark) is drawn at the eye centre; skin between the brows is lighter on un-occluded faces.
    darker = 0
    recs = [r for r in make_records(16, seed=11, size=160) if not r.attributes["occluded"]]
    for r in recs:
        gray = cv2.cvtColor(r.image, cv2.COLOR_RGB2GRAY).astype(float)
        eye = r.points[36:42].mean(0)
        nose = r.points[28]
        darker += gray[int(round(eye[1])), int(round(eye[0]))] < gray[int(round(nose[1])), int(round(nose[0]))]
    assert darker >= 0.7 * len(recs)


@pytest.mark.parametrize("kwargs, word", [({"n": -1}, "n"), ({"n": 2, "scheme": "nope"}, "scheme"),
                                          ({"n": 2, "size": 8}, "size")])
def test_bad_arguments_name_the_argument(kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_records(**kwargs)


def test_mean_face_is_symmetric_and_frontal():
    s = np.asarray(face3d.MEAN_FACE_68)
    perm = list(schemes.get_scheme("300w_68").flip_permutation)
    np.testing.assert_allclose(s[perm] * [-1, 1, 1], s, atol=1e-4)
    assert s[30, 2] == s[:, 2].min()  # nose tip closest to the camera
    assert s[36, 0] < 0 < s[45, 0] and s[19, 1] < s[36, 1] < s[30, 1] < s[57, 1] < s[8, 1]
    np.testing.assert_allclose(np.linalg.norm(s[45] - s[36]), 90.0, atol=0.2)
