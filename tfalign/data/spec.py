"""Dataset spec strings shared by every CLI: ``TYPE:ARGS[#SPLIT]`` → a list of ``FaceRecord``.

Spec forms (paths may not contain ``:``)::

    300w:DIR                        every .pts under DIR (recursive), image with the same stem beside it
                                    (300-W, iBUG, Menpo, LFPW, HELEN, AFW; 300-VW's annot/ + imgs/ too)
    pts:PATH                        the same for one .pts file or a folder
    wflw:ANNOTATIONS:IMAGES         WFLW list_98pt_rect_attr_*.txt and the WFLW_images folder
    cofw:MAT                        COFW_train.mat / COFW_test.mat (MATLAB v5 or v7.3)
    celeba:LANDMARKS:IMAGES[:BBOX]  CelebA list_landmarks*.txt, image folder, optional list_bbox_celeba.txt
    mtfl:LISTFILE                   MTFL training.txt / testing.txt (images relative to the list file)
    aflw2000:DIR[:pt2d]             AFLW2000-3D .mat + .jpg (68 points from pt3d_68; pt2d → 19 AFLW points)
    dlib:XML                        dlib imglab XML (images relative to the XML)
    ljson:PATH                      menpo .ljson file or folder (image beside each file)
    coco:JSON[:IMAGES]              COCO-style keypoint JSON (mmpose face sets, COCO-WholeBody face)
    synthetic:N[:SCHEME][:SEED]     N procedural faces (tfalign.data.synthetic), default 300w_68, seed 0

The fixed validation split: append ``#val`` or ``#train`` (e.g. ``300w:/data/lfpw/trainset#val``). A face goes to
``val`` when a hash of its image *file name* (seeded with 0) falls below ``val_fraction`` = 0.1, so the split is
the same whatever the order, folder or machine, and all faces of one image land on the same side.
``#val=0.2`` / ``#train=0.2`` choose another fraction. Every model in tfalign trains on ``#train`` and
selects checkpoints on ``#val``; test splits are separate datasets, never a suffix.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
from typing import Callable, Optional

import numpy as np

from tfalign.data import readers
from tfalign.data.records import DataError, FaceRecord

SPEC_HELP = ("dataset spec: 300w:DIR | pts:PATH | wflw:ANNOTATIONS:IMAGES | cofw:MAT | "
             "celeba:LANDMARKS:IMAGES[:BBOX] | mtfl:LISTFILE | aflw2000:DIR[:pt2d] | dlib:XML | ljson:PATH | "
             "coco:JSON[:IMAGES] | synthetic:N[:SCHEME][:SEED], optionally followed by #train or #val "
             "(the fixed 90/10 split; #val=0.2 for another fraction)")

VAL_FRACTION = 0.1
_SPLIT_RE = re.compile(r"^(train|val)(?:=([0-9]*\.?[0-9]+))?$")


def _split_key(record: FaceRecord) -> str:
    if record.image_path:
        return os.path.basename(record.image_path)
    if record.source:
        return os.path.basename(record.source)
    # In-memory faces without a name: their own pixels and points identify them.
    h = hashlib.sha1(record.points.tobytes())
    if record.image is not None:
        h.update(np.ascontiguousarray(record.image).tobytes())
    return h.hexdigest()


def in_val(key: str, val_fraction: float = VAL_FRACTION, seed: int = 0) -> bool:
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < val_fraction


def split_records(records: list, split: str, val_fraction: float = VAL_FRACTION, seed: int = 0) -> list:
    """The ``train`` or ``val`` part of ``records``, decided per image file name (see the module docstring)."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    want_val = split == "val"
    return [r for r in records if in_val(_split_key(r), val_fraction, seed) == want_val]


def parse_spec(spec: str) -> tuple:
    """``(kind, args, split, val_fraction)``; ValueError naming the spec when it is malformed."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"dataset spec is empty; {SPEC_HELP}")
    body, split, fraction = spec.strip(), None, VAL_FRACTION
    if "#" in body:
        body, _, suffix = body.rpartition("#")
        m = _SPLIT_RE.match(suffix)
        if not m:
            raise ValueError(f"dataset spec {spec!r}: unknown suffix #{suffix} (use #train, #val or #val=0.2)")
        split = m.group(1)
        if m.group(2) is not None:
            fraction = float(m.group(2))
            if not 0.0 < fraction < 1.0:
                raise ValueError(f"dataset spec {spec!r}: split fraction must be in (0, 1), got {fraction}")
    kind, sep, rest = body.partition(":")
    kind = kind.lower()
    if not sep or kind not in _KINDS:
        raise ValueError(f"dataset spec {spec!r}: unknown dataset type {kind!r}; {SPEC_HELP}")
    args = rest.split(":")
    lo, hi, usage = _KINDS[kind][1:]
    if not lo <= len(args) <= hi or any(not a for a in args):
        raise ValueError(f"dataset spec {spec!r}: expected {usage}")
    return kind, args, split, fraction


def _synthetic(args, on_error):
    try:
        n = int(args[0])
        seed = int(args[2]) if len(args) > 2 else 0
    except ValueError:
        raise ValueError(f"synthetic spec: N and SEED must be integers, got {':'.join(args)!r}") from None
    from tfalign.data.synthetic import make_records  # lazily: it pulls in OpenCV drawing code

    try:
        return make_records(n, args[1] if len(args) > 1 else "300w_68", seed)
    except ValueError as e:
        raise ValueError(f"synthetic spec {':'.join(args)!r}: {e}") from None


def _celeba(args, on_error):
    return readers.read_celeba(args[0], args[1], args[2] if len(args) > 2 else None, check_images=False,
                               on_error=on_error)


# kind → (reader(args, on_error), min args, max args, usage)
_KINDS: dict = {
    "300w": (lambda a, e: readers.read_pts_dir(a[0], check_images=False, on_error=e), 1, 1, "300w:DIR"),
    "pts": (lambda a, e: readers.read_pts_dir(a[0], check_images=False, on_error=e), 1, 1, "pts:PATH"),
    "wflw": (lambda a, e: readers.read_wflw(a[0], a[1], check_images=False, on_error=e), 2, 2,
             "wflw:ANNOTATIONS:IMAGES"),
    "cofw": (lambda a, e: readers.read_cofw(a[0], check_images=False, on_error=e), 1, 1, "cofw:MAT"),
    "celeba": (_celeba, 2, 3, "celeba:LANDMARKS:IMAGES[:BBOX]"),
    "mtfl": (lambda a, e: readers.read_mtfl(a[0], check_images=False, on_error=e), 1, 1, "mtfl:LISTFILE"),
    "aflw2000": (lambda a, e: readers.read_aflw2000(a[0], a[1] if len(a) > 1 else "pt3d_68", check_images=False,
                                                    on_error=e), 1, 2, "aflw2000:DIR[:pt2d]"),
    "dlib": (lambda a, e: readers.read_dlib_xml(a[0], check_images=False, on_error=e), 1, 1, "dlib:XML"),
    "ljson": (lambda a, e: readers.read_ljson(a[0], check_images=False, on_error=e), 1, 1, "ljson:PATH"),
    "coco": (lambda a, e: readers.read_coco(a[0], a[1] if len(a) > 1 else None, check_images=False, on_error=e),
             1, 2, "coco:JSON[:IMAGES]"),
    "synthetic": (_synthetic, 1, 3, "synthetic:N[:SCHEME][:SEED]"),
}


def load_records(spec: str, skip_bad: bool = False, report: Optional[list] = None,
                 check_images: bool = True, progress: Optional[bool] = None) -> list:
    """Parse ``spec`` (see the module docstring) into records.

    Args:
        spec: the dataset spec string.
        skip_bad: go on past bad records; each one's ``DataError`` is appended to ``report``.
        report: list collecting the skipped records' errors (only used with ``skip_bad``).
        check_images: check that each image exists and no point lies far outside it (header read only).
        progress: tqdm bar while checking images; default: when stderr is a terminal and there are many faces.

    Raises:
        ValueError: the spec itself is malformed (names the spec and the expected form).
        DataError: a bad file or record (names the file and line), unless ``skip_bad``.
    """
    kind, args, split, fraction = parse_spec(spec)
    skipped = report if report is not None else []
    on_error: Optional[Callable] = skipped.append if skip_bad else None
    if kind == "aflw2000" and len(args) > 1 and args[1] not in ("pt3d_68", "pt2d"):
        raise ValueError(f"dataset spec {spec!r}: aflw2000 landmarks must be pt3d_68 or pt2d, got {args[1]!r}")
    records = _KINDS[kind][0](args, on_error)
    if split is not None:
        total = len(records)
        records = split_records(records, split, fraction)
        if total and not records:
            raise DataError(spec, f"the #{split} split of {total} faces is empty (val_fraction={fraction})")
    if check_images:
        show = progress if progress is not None else (len(records) > 2000 and sys.stderr.isatty())
        records = readers.check_records(records, on_error, progress=show)
    if not records:
        raise DataError(spec, "no faces loaded" + (f" ({len(skipped)} bad records skipped)" if skipped else ""))
    return records


__all__ = ["SPEC_HELP", "VAL_FRACTION", "in_val", "load_records", "parse_spec", "split_records"]
