"""Landmark schemes: structure, conversions, and flip permutations / eye indices checked on real annotated faces."""
import collections
import itertools

import numpy as np
import pytest

from tfalign import schemes as S
from tfalign.data import readers as R

ALL = S.list_schemes()
MMPOSE = ["300w/test_300w.json", "300wlp/test_300wlp.json", "aflw/test_aflw.json", "coco/test_coco_wholebody.json",
          "cofw/test_cofw.json", "lapa/test_lapa.json", "wflw/test_wflw.json", "300vw/anno_300vw.json"]


@pytest.fixture(scope="module")
def real_faces(shared_data):
    """Real annotated faces per scheme: 100 LFPW faces, 100 frontal MTFL faces, every mmpose fixture."""
    lfpw = sorted((shared_data / "lfpw" / "trainset").glob("*.pts"))[:100]
    recs = [R.read_pts(str(p)) for p in lfpw]
    for j in MMPOSE:
        recs += R.read_coco(str(shared_data / "fixtures" / "mmpose_face_fixtures" / j))
    recs += [r for r in R.read_mtfl(str(shared_data / "mtfl" / "training.txt")) if r.attributes["pose"] == 3][:100]
    by = collections.defaultdict(list)
    for r in recs:
        by[r.scheme].append(r)
    return by


def _aligned_residual(a, b):
    """RMS distance between shapes a and b [..., N, 2] after the best similarity transform of b onto a."""
    za = (a - a.mean(-2, keepdims=True)) @ np.array([1, 1j])
    zb = (b - b.mean(-2, keepdims=True)) @ np.array([1, 1j])
    s = (np.conj(zb) * za).sum(-1, keepdims=True) / (np.conj(zb) * zb).sum(-1, keepdims=True)
    return np.sqrt(np.mean(np.abs(za - s * zb) ** 2, axis=-1))


def _mirror_score(points, widths, perm, iod):
    """Median over faces of how far the mirrored + re-indexed shape is from the face itself (in inter-ocular units).

    Faces are close to symmetric, so the right permutation maps the mirrored face onto (nearly) the same shape.
    """
    q = points.copy()
    q[..., 0] = widths[:, None] - 1 - q[..., 0]
    return float(np.median(_aligned_residual(points, q[:, perm]) / iod))


@pytest.mark.parametrize("name", ALL)
def test_scheme_structure(name):
    s = S.get_scheme(name)
    assert len(set(s.point_names)) == s.num_points
    covered = sorted(i for idx in s.groups.values() for i in idx)
    assert covered == list(range(s.num_points)), "groups must partition the points"
    perm = np.array(s.flip_permutation)
    assert np.array_equal(perm[perm], np.arange(s.num_points))
    group_of = {i: g for g, idx in s.groups.items() for i in idx}
    for i, j in enumerate(perm):
        g = group_of[i]
        mirrored = g.replace("left", "\0").replace("right", "left").replace("\0", "right")
        assert group_of[int(j)] == mirrored, f"{name}: point {i} ({g}) flips into group {group_of[int(j)]}"


def test_scheme_rejects_a_non_involution():
    with pytest.raises(ValueError, match="involution"):
        S.LandmarkScheme(name="bad", num_points=3, point_names=("a", "b", "c"), groups={"all": (0, 1, 2)},
                         flip_permutation=(1, 2, 0), norm_pairs={})


def test_counts_and_lookup():
    assert {n: S.get_scheme(n).num_points for n in ALL} == {
        "300w_68": 68, "wflw_98": 98, "cofw_29": 29, "aflw_19": 19, "mtfl_5": 5, "menpo_39": 39, "lapa_106": 106}
    for n in ALL:
        assert S.scheme_for_count(S.get_scheme(n).num_points).name == n
    with pytest.raises(KeyError, match="unknown landmark scheme"):
        S.get_scheme("nope")


@pytest.mark.parametrize("source,target", [(s, t) for s in ALL for t in S.get_scheme(s).conversions])
def test_conversions_commute_with_flip(source, target):
    """Converting then flipping equals flipping then converting: conversions map left points to left points."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 100, (3, S.get_scheme(source).num_points, 2)).astype(np.float32)
    a = S.get_scheme(target).flip(S.convert(p, source, target), 100)
    b = S.convert(S.get_scheme(source).flip(p, 100), source, target)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_required_conversions_exist():
    assert S.conversion_matrix("wflw_98", "300w_68").shape == (68, 98)
    assert S.conversion_matrix("300w_68", "mtfl_5").shape == (5, 68)
    assert S.conversion_matrix("wflw_98", "mtfl_5").shape == (5, 98)
    with pytest.raises(KeyError, match="no conversion"):
        S.conversion_matrix("mtfl_5", "300w_68")


def test_menpo_profile_flip_keeps_the_order():
    s = S.get_scheme("menpo_39")
    p = np.random.default_rng(0).uniform(0, 50, (39, 2))
    f = s.flip(p, 50)
    np.testing.assert_allclose(f[:, 0], 49 - p[:, 0], rtol=1e-6)
    np.testing.assert_allclose(f[:, 1], p[:, 1], rtol=1e-6)


# --- on real faces ---------------------------------------------------------------------------------------------

REAL = ["300w_68", "wflw_98", "cofw_29", "aflw_19", "lapa_106", "mtfl_5"]


def _stack(records):
    pts = np.stack([r.points for r in records]).astype(np.float64)
    widths = np.array([r.attributes["image_size"][0] for r in records], np.float64)
    return pts, widths


@pytest.mark.needs_data
@pytest.mark.parametrize("name", REAL)
def test_flip_permutation_is_best_on_real_faces(real_faces, name):
    """Mirroring a real face and re-indexing lands on the mirrored points: the scheme's permutation fits the
    mirrored faces better than every permutation that differs from it in one or two pairs."""
    s = S.get_scheme(name)
    faces = real_faces[name]
    assert len(faces) >= 2
    pts, widths = _stack(faces)
    iod = s.norm_distance(pts, "inter_ocular")
    perm = np.array(s.flip_permutation)
    base = _mirror_score(pts, widths, perm, iod)
    assert base < 0.25, f"{name}: mirrored faces are {base:.3f} IOD from the originals"
    pairs = [(i, int(perm[i])) for i in range(len(perm)) if perm[i] > i]

    def same_place(p, q):  # LaPa repeats the pupils (74/83 = 104/105): exchanging those changes nothing
        return np.allclose(pts[:, p[0]], pts[:, q[0]]) and np.allclose(pts[:, p[1]], pts[:, q[1]])

    for (a, b) in pairs:
        wrong = perm.copy()
        wrong[a], wrong[b] = a, b
        assert _mirror_score(pts, widths, wrong, iod) > base, f"{name}: not swapping {a}/{b} fits as well"
    for (a, b), (c, d) in itertools.combinations(pairs, 2):
        if same_place((a, b), (c, d)):
            continue
        wrong = perm.copy()
        wrong[[a, d, c, b]] = [d, a, b, c]
        assert _mirror_score(pts, widths, wrong, iod) > base, f"{name}: pairing {a}/{d}, {c}/{b} fits as well"


@pytest.mark.needs_data
@pytest.mark.parametrize("name", REAL)
def test_left_points_are_image_left_on_real_faces(real_faces, name):
    s = S.get_scheme(name)
    pts, widths = _stack(real_faces[name])
    for g in s.groups:
        if g.startswith("left_"):
            left = pts[:, list(s.groups[g]), 0].mean(axis=1)
            right = pts[:, list(s.groups[g.replace("left_", "right_")]), 0].mean(axis=1)
            assert np.mean(left < right) >= 0.9, f"{name}: group {g} is not on the image left"
    for p, w in zip(pts, widths):
        f = s.flip(p, w)
        np.testing.assert_allclose(s.flip(f, w), p, atol=1e-3)


@pytest.mark.needs_data
@pytest.mark.parametrize("name", [n for n in REAL if n != "mtfl_5"])
def test_inter_ocular_points_are_outer_eye_corners(real_faces, name):
    s = S.get_scheme(name)
    pts, _ = _stack(real_faces[name])
    (a,), (b,) = s.norm_pairs["inter_ocular"]
    pa, pb = s.norm_pairs["inter_pupil"]
    pupils = set(pa + pb) if len(pa) == 1 else set()  # 300-W has no pupil point: its pupils are eye-contour means
    left_eye = [i for i in s.groups["left_eye"] if i not in pupils]
    right_eye = [i for i in s.groups["right_eye"] if i not in pupils]
    assert a in left_eye and b in right_eye
    assert np.mean(np.argmin(pts[:, left_eye, 0], axis=1) == left_eye.index(a)) >= 0.9
    assert np.mean(np.argmax(pts[:, right_eye, 0], axis=1) == right_eye.index(b)) >= 0.9
    if pupils:  # the pupils lie between the corners of their eye
        for pupil, eye in ((pa[0], left_eye), (pb[0], right_eye)):
            lo, hi = pts[:, eye, 0].min(1), pts[:, eye, 0].max(1)
            assert np.mean((pts[:, pupil, 0] > lo) & (pts[:, pupil, 0] < hi)) >= 0.9


@pytest.mark.needs_data
def test_68_inter_pupil_uses_eye_contours(real_faces):
    s = S.get_scheme("300w_68")
    a, b = s.norm_pairs["inter_pupil"]
    assert set(a) == set(s.groups["left_eye"]) and set(b) == set(s.groups["right_eye"])


@pytest.mark.needs_data
def test_wflw_conversions_on_real_faces(real_faces):
    """WFLW → 68 gives a face whose 68-point facts hold; 98 → 5 agrees with 98 → 68 → 5 (pupils vs eye contours)."""
    pts, widths = _stack(real_faces["wflw_98"])
    p68 = S.convert(pts, "wflw_98", "300w_68").astype(np.float64)
    s68 = S.get_scheme("300w_68")
    iod = s68.norm_distance(p68, "inter_ocular")
    np.testing.assert_allclose(iod, S.get_scheme("wflw_98").norm_distance(pts, "inter_ocular"), rtol=1e-5)
    assert _mirror_score(p68, widths, np.array(s68.flip_permutation), iod) < 0.25
    direct = S.convert(pts, "wflw_98", "mtfl_5")
    chained = S.convert(p68, "300w_68", "mtfl_5")
    err = np.linalg.norm(direct - chained, axis=-1) / iod[:, None]
    assert err.max() < 0.12, err


@pytest.mark.needs_data
@pytest.mark.parametrize("name", ["wflw_98", "cofw_29", "aflw_19", "lapa_106", "300w_68"])
def test_five_point_conversion_on_real_faces(real_faces, name):
    """The converted 5 points keep the MTFL order: eyes above the nose above the mouth, left before right."""
    pts, _ = _stack(real_faces[name])
    p5 = S.convert(pts, name, "mtfl_5")
    le, re, nose, lm, rm = (p5[:, i] for i in range(5))
    assert np.all(le[:, 0] < re[:, 0]) and np.all(lm[:, 0] < rm[:, 0])
    assert np.mean((nose[:, 1] > np.maximum(le[:, 1], re[:, 1])) & (nose[:, 1] < np.minimum(lm[:, 1], rm[:, 1]))) >= 0.9
