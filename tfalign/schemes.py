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
