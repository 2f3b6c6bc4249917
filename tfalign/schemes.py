"""Landmark schemes as data: every fact about a markup lives in one ``LandmarkScheme``.

A fact (point count, names, groups, flip permutation, normalisation indices, conversions) is never an ``if``
branch elsewhere in the code: readers, the augmentation pipeline, metrics and the export contract read it here.

Conventions:
    * "left"/"right" in point names are the *image* left/right (smaller x first), which is how the 300-W and MTFL
      files order them.
    * ``norm_pairs[name] = (idx_a, idx_b)``: the normalising distance is between the mean of the points ``idx_a``
      and the mean of the points ``idx_b`` (a single index is a 1-tuple).
    * ``conversions[target] = tuple of index tuples``: target point ``j`` is the mean of the source points listed at
      position ``j``. Use :func:`conversion_matrix` to apply it.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class LandmarkScheme:
    name: str
    num_points: int
    point_names: tuple
    groups: Mapping[str, tuple]
    flip_permutation: tuple
    norm_pairs: Mapping[str, tuple]
    conversions: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        n = self.num_points
        if len(self.point_names) != n:
            raise ValueError(f"scheme {self.name}: {len(self.point_names)} point names for {n} points")
        perm = self.flip_permutation
        if sorted(perm) != list(range(n)):
            raise ValueError(f"scheme {self.name}: flip_permutation is not a permutation of 0..{n - 1}")
        if any(perm[perm[i]] != i for i in range(n)):
            raise ValueError(f"scheme {self.name}: flip_permutation is not an involution")
        for key, (a, b) in self.norm_pairs.items():
            for i in tuple(a) + tuple(b):
                if not 0 <= i < n:
                    raise ValueError(f"scheme {self.name}: norm pair {key} index {i} out of range")

    def norm_distance(self, points: np.ndarray, kind: str = "inter_ocular") -> np.ndarray:
        """Normalising distance for points [..., N, 2] (``inter_ocular``, ``inter_pupil``)."""
        if kind not in self.norm_pairs:
            raise KeyError(f"scheme {self.name} defines no '{kind}' normalisation; it has {sorted(self.norm_pairs)}")
        a, b = self.norm_pairs[kind]
        pa = np.mean(np.asarray(points)[..., list(a), :], axis=-2)
        pb = np.mean(np.asarray(points)[..., list(b), :], axis=-2)
        return np.linalg.norm(pa - pb, axis=-1)

    def flip(self, points: np.ndarray, width: float) -> np.ndarray:
        """Mirror points [..., N, 2] (0-based pixel coordinates) in an image of ``width`` and re-index them."""
        p = np.array(points, dtype=np.float32, copy=True)
        p[..., 0] = (width - 1) - p[..., 0]
        return p[..., list(self.flip_permutation), :]


_SCHEMES: dict[str, LandmarkScheme] = {}
_ALIASES: dict[str, str] = {}


def register_scheme(scheme: LandmarkScheme, aliases: Sequence[str] = ()) -> LandmarkScheme:
    _SCHEMES[scheme.name] = scheme
    for a in aliases:
        _ALIASES[a] = scheme.name
    return scheme


def get_scheme(name: str) -> LandmarkScheme:
    key = _ALIASES.get(name, name)
    if key not in _SCHEMES:
        raise KeyError(f"unknown landmark scheme '{name}'; known: {', '.join(sorted(_SCHEMES))}")
    return _SCHEMES[key]


def scheme_for_count(num_points: int) -> LandmarkScheme:
    """The default scheme with this many points (68 → 300-W, 98 → WFLW, ...)."""
    for s in _SCHEMES.values():
        if s.num_points == num_points:
            return s
    raise KeyError(f"no landmark scheme has {num_points} points; known counts: "
                   f"{sorted({s.num_points for s in _SCHEMES.values()})}")


def list_schemes() -> list[str]:
    return sorted(_SCHEMES)


def conversion_matrix(source: str, target: str) -> np.ndarray:
    """Matrix M [N_target, N_source] with ``target_points = M @ source_points``."""
    src, dst = get_scheme(source), get_scheme(target)
    if src.name == dst.name:
        return np.eye(src.num_points, dtype=np.float32)
    if dst.name not in src.conversions:
        raise KeyError(f"no conversion defined from {src.name} to {dst.name}; "
                       f"{src.name} converts to: {sorted(src.conversions) or 'nothing'}")
    rows = src.conversions[dst.name]
    m = np.zeros((dst.num_points, src.num_points), dtype=np.float32)
    for j, idx in enumerate(rows):
        idx = (idx,) if isinstance(idx, int) else tuple(idx)
        m[j, list(idx)] = 1.0 / len(idx)
    return m


def convert(points: np.ndarray, source: str, target: str) -> np.ndarray:
    return np.einsum("ts,...sd->...td", conversion_matrix(source, target), np.asarray(points, np.float32))


def _mirror_pairs(n: int, pairs: Sequence[tuple]) -> tuple:
    perm = list(range(n))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


# --- 300-W / iBUG 68 (also Menpo frontal, 300VW, COCO-WholeBody face, 300W-LP, AFLW2000-3D) -----------------
_68_pairs = ([(i, 16 - i) for i in range(8)]
             + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]
             + [(31, 35), (32, 34)]
             + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
             + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
             + [(60, 64), (61, 63), (65, 67)])
_68_groups = {
    "jaw": tuple(range(0, 17)), "left_brow": tuple(range(17, 22)), "right_brow": tuple(range(22, 27)),
    "nose_bridge": tuple(range(27, 31)), "nose_base": tuple(range(31, 36)),
    "left_eye": tuple(range(36, 42)), "right_eye": tuple(range(42, 48)),
    "outer_mouth": tuple(range(48, 60)), "inner_mouth": tuple(range(60, 68)),
}
_68_names = tuple(f"{g}_{k}" for g, idx in _68_groups.items() for k in range(len(idx)))

IBUG68 = register_scheme(LandmarkScheme(
    name="300w_68", num_points=68, point_names=_68_names, groups=_68_groups,
    flip_permutation=_mirror_pairs(68, _68_pairs),
    norm_pairs={"inter_ocular": ((36,), (45,)), "inter_pupil": (tuple(range(36, 42)), tuple(range(42, 48)))},
    conversions={"mtfl_5": (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,))},
    description="iBUG/300-W 68-point markup (image-left first).",
), aliases=("ibug_68", "68", "menpo_68", "aflw2000_68"))

MTFL5 = register_scheme(LandmarkScheme(
    name="mtfl_5", num_points=5,
    point_names=("left_eye", "right_eye", "nose", "left_mouth", "right_mouth"),
    groups={"eyes": (0, 1), "nose": (2,), "mouth": (3, 4)},
    flip_permutation=(1, 0, 2, 4, 3),
    norm_pairs={"inter_pupil": ((0,), (1,)), "inter_ocular": ((0,), (1,))},
    description="5 points (eye centres, nose tip, mouth corners): MTFL, CelebA. Eye centres, so inter_ocular = "
                "inter_pupil here.",
), aliases=("celeba_5", "5"))


def _generated_names(groups: Mapping[str, tuple], n: int, singles: Mapping[int, str] = None) -> tuple:
    """``{group}_{k}`` for every point of every group (groups must partition 0..n-1), ``singles`` override."""
    names = [""] * n
    for g, idx in groups.items():
        for k, i in enumerate(idx):
            names[i] = f"{g}_{k}" if len(idx) > 1 else g
    for i, name in (singles or {}).items():
        names[i] = name
    if any(not s for s in names) or len(set(names)) != n:
        raise ValueError("scheme groups must name every point exactly once")
    return tuple(names)


# --- WFLW 98 (Wu et al., "Look at Boundary", CVPR 2018) -----------------------------------------------------
# Contour 0-32; left brow 33-37 upper (outer→inner) + 38-41 lower (inner→outer); right brow 42-46 upper
# (inner→outer) + 47-50 lower; nose bridge 51-54; nose base 55-59; left eye 60-67 (60 outer corner, 64 inner);
# right eye 68-75 (68 inner, 72 outer); outer mouth 76-87 (76, 82 corners); inner mouth 88-95; pupils 96, 97.
# Pairs as in the WFLW release / mmpose's dataset_info, checked on real faces in tests/test_schemes.py.
_98_pairs = ([(i, 32 - i) for i in range(16)]
             + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
             + [(55, 59), (56, 58)]
             + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
             + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]
             + [(88, 92), (89, 91), (93, 95), (96, 97)])
_98_groups = {
    "jaw": tuple(range(0, 33)), "left_brow": tuple(range(33, 42)), "right_brow": tuple(range(42, 51)),
    "nose_bridge": tuple(range(51, 55)), "nose_base": tuple(range(55, 60)),
    "left_eye": tuple(range(60, 68)), "right_eye": tuple(range(68, 76)),
    "outer_mouth": tuple(range(76, 88)), "inner_mouth": tuple(range(88, 96)),
    "left_pupil": (96,), "right_pupil": (97,),
}
# 98 → 68: every second contour point, the upper brow arcs, the whole nose, 6 of the 8 points of each eye
# (corners + the two lid points nearest the 68-markup's), the 20 mouth points. Widely used mapping (PIPNet, LAB).
_98_to_68 = (tuple(range(0, 33, 2)) + tuple(range(33, 38)) + tuple(range(42, 47)) + tuple(range(51, 60))
             + (60, 61, 63, 64, 65, 67) + (68, 69, 71, 72, 73, 75) + tuple(range(76, 96)))

WFLW98 = register_scheme(LandmarkScheme(
    name="wflw_98", num_points=98, point_names=_generated_names(_98_groups, 98), groups=_98_groups,
    flip_permutation=_mirror_pairs(98, _98_pairs),
    norm_pairs={"inter_ocular": ((60,), (72,)), "inter_pupil": ((96,), (97,))},
    conversions={"300w_68": tuple((i,) for i in _98_to_68),
                 "mtfl_5": ((96,), (97,), (54,), (76,), (82,))},
    description="WFLW 98-point markup (image-left first); pupils 96/97.",
), aliases=("98",))

# --- COFW 29 (Burgos-Artizzu et al., ICCV 2013) --------------------------------------------------------------
# Left/right pairs: brow outer corners 0/1, brow inner corners 2/3, brow top 4/6, brow bottom 5/7, eye outer
# corners 8/9, eye inner corners 10/11, upper lids 12/14, lower lids 13/15, pupils 16/17, nose wings 18/19;
# centre line: nose tip 20, under the nose 21; mouth corners 22/23; lips 24-27 (top to bottom); chin 28.
_29_names = ("left_brow_outer", "right_brow_outer", "left_brow_inner", "right_brow_inner",
             "left_brow_top", "left_brow_bottom", "right_brow_top", "right_brow_bottom",
             "left_eye_outer", "right_eye_outer", "left_eye_inner", "right_eye_inner",
             "left_eye_top", "left_eye_bottom", "right_eye_top", "right_eye_bottom",
             "left_pupil", "right_pupil", "left_nose_wing", "right_nose_wing", "nose_tip", "nose_bottom",
             "left_mouth", "right_mouth", "upper_lip_top", "upper_lip_bottom", "lower_lip_top",
             "lower_lip_bottom", "chin")
COFW29 = register_scheme(LandmarkScheme(
    name="cofw_29", num_points=29, point_names=_29_names,
    groups={"left_brow": (0, 2, 4, 5), "right_brow": (1, 3, 6, 7), "left_eye": (8, 10, 12, 13, 16),
            "right_eye": (9, 11, 14, 15, 17), "nose": (18, 19, 20, 21), "mouth": (22, 23, 24, 25, 26, 27),
            "jaw": (28,)},
    flip_permutation=_mirror_pairs(29, [(0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15),
                                        (16, 17), (18, 19), (22, 23)]),
    norm_pairs={"inter_ocular": ((8,), (9,)), "inter_pupil": ((16,), (17,))},
    conversions={"mtfl_5": ((16,), (17,), (20,), (22,), (23,))},
    description="COFW 29-point markup with per-point occlusion flags; pupils 16/17.",
), aliases=("29",))

# --- AFLW 19 (Koestinger et al. 2011; the 21 AFLW points without the two ear lobes) -------------------------
_19_names = ("left_brow_outer", "left_brow_centre", "left_brow_inner", "right_brow_inner", "right_brow_centre",
             "right_brow_outer", "left_eye_outer", "left_eye_centre", "left_eye_inner", "right_eye_inner",
             "right_eye_centre", "right_eye_outer", "left_nose_wing", "nose_tip", "right_nose_wing",
             "left_mouth", "mouth_centre", "right_mouth", "chin")
AFLW19 = register_scheme(LandmarkScheme(
    name="aflw_19", num_points=19, point_names=_19_names,
    groups={"left_brow": (0, 1, 2), "right_brow": (3, 4, 5), "left_eye": (6, 7, 8), "right_eye": (9, 10, 11),
            "nose": (12, 13, 14), "mouth": (15, 16, 17), "jaw": (18,)},
    flip_permutation=_mirror_pairs(19, [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)]),
    norm_pairs={"inter_ocular": ((6,), (11,)), "inter_pupil": ((7,), (10,))},
    conversions={"mtfl_5": ((7,), (10,), (13,), (15,), (17,))},
    description="AFLW 19-point markup (ears removed). Papers usually normalise AFLW by the box size "
                "(sqrt(w*h)), which tfalign.metrics offers for every scheme.",
), aliases=("19",))

# --- LaPa 106 (Liu et al., AAAI 2020; the JD 106-point layout) ----------------------------------------------
# Contour 0-32; left brow 33-37 upper + 38-41 lower, right brow 42-46 upper + 47-50 lower; nose bridge 51-54
# (54 = tip); nose base 55-65 (60 = centre); left eye 66-73 (66 outer, 70 inner) + pupil 74; right eye 75-82
# (75 inner, 79 outer) + pupil 83; outer mouth 84-95 (84, 90 corners); inner mouth 96-103; 104/105 repeat the
# pupils (as in the release).
_106_pairs = ([(i, 32 - i) for i in range(16)]
              + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
              + [(55, 65), (56, 64), (57, 63), (58, 62), (59, 61)]
              + [(66, 79), (67, 78), (68, 77), (69, 76), (70, 75), (71, 82), (72, 81), (73, 80), (74, 83)]
              + [(84, 90), (85, 89), (86, 88), (91, 95), (92, 94), (96, 100), (97, 99), (101, 103), (104, 105)])
_106_groups = {
    "jaw": tuple(range(0, 33)), "left_brow": tuple(range(33, 42)), "right_brow": tuple(range(42, 51)),
    "nose_bridge": tuple(range(51, 55)), "nose_base": tuple(range(55, 66)),
    "left_eye": tuple(range(66, 74)), "left_pupil": (74,), "right_eye": tuple(range(75, 83)),
    "right_pupil": (83,), "outer_mouth": tuple(range(84, 96)), "inner_mouth": tuple(range(96, 104)),
    "left_pupil_2": (104,), "right_pupil_2": (105,),
}
LAPA106 = register_scheme(LandmarkScheme(
    name="lapa_106", num_points=106, point_names=_generated_names(_106_groups, 106), groups=_106_groups,
    flip_permutation=_mirror_pairs(106, _106_pairs),
    norm_pairs={"inter_ocular": ((66,), (79,)), "inter_pupil": ((74,), (83,))},
    conversions={"mtfl_5": ((74,), (83,), (54,), (84,), (90,))},
    description="LaPa / JD 106-point markup (image-left first).",
), aliases=("106", "jd_106"))

# --- Menpo 2D profile 39 (Deng et al., IJCV 2019) -------------------------------------------------------------
# The profile markup annotates only the visible half of the face, in one fixed order for left- and right-facing
# profiles. Mirroring a left profile gives a right profile annotated in the *same* order, so the flip permutation
# is the identity. No real profile fixture is available here, so the per-point semantics are not encoded: the
# names are positional and there is no eye pair (one eye is visible); normalise by the box size.
MENPO39 = register_scheme(LandmarkScheme(
    name="menpo_39", num_points=39, point_names=tuple(f"point_{i:02d}" for i in range(39)),
    groups={"all": tuple(range(39))},
    flip_permutation=tuple(range(39)),
    norm_pairs={},
    description="Menpo 2D profile 39-point markup (visible half-face; flip keeps the order).",
), aliases=("39", "menpo_profile_39"))
