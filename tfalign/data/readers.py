"""Readers for the real landmark formats. Every reader returns ``FaceRecord``s with 0-based pixel points.

One function per format:

=====================  ======================================================  ==============================
format                 reader                                                  coordinates on disk
=====================  ======================================================  ==============================
300-W / iBUG / Menpo   :func:`read_pts` (one file), :func:`read_pts_dir`       1-based → minus 1
WFLW list file         :func:`read_wflw` (196 coords, 4 box, 6 flags, name)    0-based
COFW .mat              :func:`read_cofw` (MATLAB v5 and HDF5 v7.3)             1-based (MATLAB) → minus 1
CelebA                 :func:`read_celeba` (``list_landmarks*.txt`` + bbox)   as given
MTFL list file         :func:`read_mtfl` (``\\`` paths, x1..x5 y1..y5)          0-based
AFLW2000-3D            :func:`read_aflw2000` (``pt3d_68`` or ``pt2d``)         as stored
dlib imglab XML        :func:`read_dlib_xml`                                   0-based
menpo LJSON            :func:`read_ljson` (points stored as (y, x))            0-based
COCO-style JSON        :func:`read_coco` (mmpose face sets, COCO-WholeBody)    0-based
=====================  ======================================================  ==============================

Errors: anything wrong with a file or a record raises :class:`DataError` naming the file (and line) and what was
wrong. Readers of files holding many faces take ``on_error``: ``None`` raises at the first bad record; a callable
receives each ``DataError`` and reading goes on (``--skip-bad``). A file that cannot be read at all always raises.

Image checks (``check_images=True``): the image must exist and no visible point may lie far outside it
(more than ``FAR_OUTSIDE`` × the image's larger side beyond an edge; real markups put occluded jaw points slightly
outside the frame, a wrong index base or swapped x/y puts them far outside). The size comes from the image header
(PIL reads only the header), so checking 10,000 files takes about a second; it is stored in
``attributes["image_size"] = (width, height)``.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from tfalign.data.records import DataError, FaceRecord
from tfalign.schemes import get_scheme, scheme_for_count

OnError = Optional[Callable[[DataError], None]]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")
FAR_OUTSIDE = 0.25

WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make_up", "occlusion", "blur")
MTFL_ATTRIBUTES = ("gender", "smile", "glasses", "pose")


# --- small shared helpers ------------------------------------------------------------------------------------

def _raise_or_report(err: DataError, on_error: OnError) -> None:
    if on_error is None:
        raise err
    on_error(err)


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a folder, expected a file") from None
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror or e}") from None


def _decode(data: bytes, path: str, line: Optional[int] = None) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        where = line if line is not None else data[:e.start].count(b"\n") + 1
        raise DataError(path, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})", where) from None


def read_text(path: str) -> str:
    """The whole file as text; a non-UTF-8 file is a DataError naming the line of the first bad byte."""
    return _decode(_read_bytes(path), path)


def _lines(path: str, on_error: OnError) -> Iterable[tuple[int, str]]:
    """(1-based line number, text) of each non-blank line; a line that is not UTF-8 is one bad record."""
    for number, raw in enumerate(_read_bytes(path).splitlines(), start=1):
        try:
            text = _decode(raw, path, number)
        except DataError as err:
            _raise_or_report(err, on_error)
            continue
        if text.strip():
            yield number, text


def _floats(tokens: Sequence, path: str, line: Optional[int], what: str) -> np.ndarray:
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        bad = next((t for t in tokens if not _is_number(t)), "?")
        raise DataError(path, f"{what}: non-numeric value {str(bad)[:40]!r}", line) from None
    if not np.all(np.isfinite(values)):
        raise DataError(path, f"{what}: NaN or infinite value", line)
    if np.any(np.abs(values) > 1e7):
        raise DataError(path, f"{what}: value of magnitude {np.abs(values).max():.3g} is not a pixel coordinate", line)
    return values


def _is_number(token) -> bool:
    try:
        float(token)
        return True
    except (TypeError, ValueError, OverflowError):
        return False


def _scheme_name(num_points: int, path: str, line: Optional[int] = None, scheme: Optional[str] = None) -> str:
    if scheme is not None:
        expected = get_scheme(scheme)
        if expected.num_points != num_points:
            raise DataError(path, f"{num_points} points, but scheme {expected.name} has {expected.num_points}", line)
        return expected.name
    try:
        return scheme_for_count(num_points).name
    except KeyError as e:
        raise DataError(path, f"{num_points} points match no landmark scheme ({e.args[0].split('; ')[-1]})",
                        line) from None


def _box_from_corners(v: np.ndarray) -> tuple:
    return (float(v[0]), float(v[1]), float(v[2] - v[0]), float(v[3] - v[1]))


# --- image checks --------------------------------------------------------------------------------------------

def image_size(path: str) -> tuple[int, int]:
    """(width, height) from the image header only (no decoding)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except FileNotFoundError:
        raise DataError(path, "image not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(path, f"not a readable image ({type(e).__name__}: {e})") from None


def check_record(record: FaceRecord, size: Optional[tuple] = None) -> None:
    """Raise DataError if the record's image is missing or a visible point lies far outside it."""
    src = record.source or record.image_path
    if record.image is not None:
        size = (int(record.image.shape[1]), int(record.image.shape[0]))
    elif size is None:
        try:
            size = image_size(record.image_path)
        except DataError as e:
            raise DataError(src, f"{e.reason}: {record.image_path}") from None
    w, h = size
    record.attributes["image_size"] = (w, h)
    margin = FAR_OUTSIDE * max(w, h)
    pts = record.points
    vis = np.ones(len(pts), bool) if record.visibility is None else record.visibility > 0
    out = vis & ((pts[:, 0] < -margin) | (pts[:, 0] > w - 1 + margin)
                 | (pts[:, 1] < -margin) | (pts[:, 1] > h - 1 + margin))
    if np.any(out):
        i = int(np.flatnonzero(out)[0])
        raise DataError(src, f"point {i} ({pts[i, 0]:.1f}, {pts[i, 1]:.1f}) is far outside the {w}x{h} image "
                             f"{record.image_path or '(in memory)'} ({int(out.sum())} such points)")


def check_records(records: list, on_error: OnError = None, progress: bool = False) -> list:
    """Check every record's image (see :func:`check_record`); returns the records that pass."""
    sizes: dict = {}
    kept = []
    it = records
    if progress:
        from tqdm import tqdm
        it = tqdm(records, desc="checking images", unit="face", leave=False)
    for rec in it:
        try:
            key = rec.image_path
            if rec.image is None and key not in sizes:
                try:
                    sizes[key] = image_size(key)
                except DataError as e:
                    sizes[key] = e
            size = sizes.get(rec.image_path)
            if isinstance(size, DataError):
                raise DataError(rec.source or rec.image_path, f"{size.reason}: {rec.image_path}")
            check_record(rec, size)
            kept.append(rec)
        except DataError as err:
            _raise_or_report(err, on_error)
    return kept


def _finish(records: list, check_images: bool, on_error: OnError) -> list:
    return check_records(records, on_error) if check_images else records


# --- 300-W / iBUG / Menpo .pts -------------------------------------------------------------------------------

def parse_pts(text: str, path: str = "<pts>") -> np.ndarray:
    """Points [N, 2] of a 300-W ``.pts`` text, converted to 0-based pixels."""
    lines = text.splitlines()
    i, n = 0, None
    while i < len(lines):
        s = lines[i].strip()
        i += 1
        if not s:
            continue
        if s == "{":
            break
        key, sep, value = s.partition(":")
        if not sep:
            raise DataError(path, f"expected 'version:', 'n_points:' or '{{', got {s[:40]!r}", i)
        if key.strip() == "n_points":
            try:
                n = int(value.strip())
            except ValueError:
                raise DataError(path, f"n_points is not an integer: {value.strip()[:40]!r}", i) from None
            if not 0 < n <= 10000:
                raise DataError(path, f"n_points must be positive, got {n}", i)
    else:
        raise DataError(path, "truncated: no '{' opening the point list", len(lines) or None)
    if n is None:
        raise DataError(path, "no 'n_points:' line before '{'", i)
    rows = []  # (line number, [x, y] tokens); converted in one go, re-checked per line only to name a bad one
    while i < len(lines):
        s = lines[i].strip()
        i += 1
        if not s:
            continue
        if s == "}":
            if len(rows) != n:
                raise DataError(path, f"{len(rows)} points, but the header says n_points: {n}", i)
            try:
                values = _floats([t for _, tokens in rows for t in tokens], path, None, "point")
            except DataError:
                for number, tokens in rows:
                    _floats(tokens, path, number, "point")
                raise
            return values.astype(np.float32).reshape(n, 2) - 1.0
        tokens = s.split()
        if len(tokens) != 2:
            raise DataError(path, f"expected 'x y', got {s[:40]!r}", i)
        rows.append((i, tokens))
        if len(rows) > n:
            raise DataError(path, f"more points than the header's n_points: {n}", i)
    raise DataError(path, f"truncated: {len(rows)} of {n} points and no closing '}}'", len(lines) or None)


def _images_in(folder: str, cache: Optional[dict]) -> dict:
    """{stem: image file name} of a folder (the first of IMAGE_EXTS wins when several share a stem)."""
    if cache is not None and folder in cache:
        return cache[folder]
    try:
        names = sorted(os.listdir(folder or "."))
    except OSError:
        names = []
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTS)}
    found: dict = {}
    for name in names:
        stem, ext = os.path.splitext(name)
        ext = ext.lower()
        if ext in rank and (stem not in found or rank[ext] < rank[os.path.splitext(found[stem])[1].lower()]):
            found[stem] = name
    if cache is not None:
        cache[folder] = found
    return found


def _image_beside(pts_path: str, listing: Optional[dict] = None) -> str:
    """The image with the same stem as ``pts_path`` (also ``../imgs/`` as in 300-VW)."""
    folder, name = os.path.split(pts_path)
    stem = os.path.splitext(name)[0]
    for d in (folder, os.path.join(os.path.dirname(folder), "imgs")):
        image = _images_in(d, listing).get(stem)
        if image is not None:
            return os.path.join(d, image)
    raise DataError(pts_path, f"no image beside it (looked for {stem} with {'/'.join(IMAGE_EXTS)})")


def read_pts(path: str, image_path: Optional[str] = None, scheme: Optional[str] = None,
             check_images: bool = True, _listing: Optional[dict] = None) -> FaceRecord:
    """One face from a ``.pts`` file; the image is the file with the same stem beside it."""
    pts = parse_pts(read_text(path), path)
    name = _scheme_name(len(pts), path, None, scheme)
    rec = FaceRecord(image_path=image_path or _image_beside(path, _listing), points=pts, scheme=name,
                     source=path)
    if check_images:
        check_record(rec)
    return rec


def read_pts_dir(root: str, scheme: Optional[str] = None, recursive: bool = True, check_images: bool = True,
                 on_error: OnError = None) -> list:
    """Every ``.pts`` under ``root`` (sorted), or ``root`` itself when it is one ``.pts`` file."""
    if os.path.isfile(root):
        return [read_pts(root, scheme=scheme, check_images=check_images)]
    if not os.path.isdir(root):
        raise DataError(root, "not found (expected a folder of .pts files)")
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        paths += [os.path.join(folder, f) for f in sorted(files) if f.lower().endswith(".pts")]
        if not recursive:
            break
    if not paths:
        raise DataError(root, "no .pts files found")
    listing: dict = {}
    records = []
    for p in paths:
        try:
            records.append(read_pts(p, scheme=scheme, check_images=False, _listing=listing))
        except DataError as err:
            _raise_or_report(err, on_error)
    return _finish(records, check_images, on_error)


# --- WFLW ----------------------------------------------------------------------------------------------------

def read_wflw(annotations: str, images_root: str, check_images: bool = True, on_error: OnError = None) -> list:
    """WFLW ``list_98pt_rect_attr_*.txt``: 196 coordinates, box (x_min y_min x_max y_max), 6 flags, image name."""
    records = []
    for line, text in _lines(annotations, on_error):
        try:
            tokens = text.split()
            if len(tokens) != 207:
                raise DataError(annotations, f"expected 207 fields (196 coordinates, 4 box, 6 attributes, name), "
                                             f"got {len(tokens)}", line)
            values = _floats(tokens[:206], annotations, line, "WFLW values")
            flags = values[200:206]
            if not np.all(np.isin(flags, (0, 1))):
                raise DataError(annotations, f"attribute flags must be 0 or 1, got {flags.tolist()}", line)
            records.append(FaceRecord(
                image_path=os.path.join(images_root, tokens[206]), points=values[:196].reshape(98, 2),
                scheme="wflw_98", box=_box_from_corners(values[196:200]),
                attributes={k: int(v) for k, v in zip(WFLW_ATTRIBUTES, flags)},
                source=f"{annotations}:{line}"))
        except DataError as err:
            _raise_or_report(err, on_error)
    return _finish(records, check_images, on_error)


# --- MTFL ----------------------------------------------------------------------------------------------------

def read_mtfl(list_file: str, images_root: Optional[str] = None, check_images: bool = True,
              on_error: OnError = None) -> list:
    """MTFL ``training.txt``/``testing.txt``: ``PATH x1..x5 y1..y5 gender smile glasses pose``.

    Paths use ``\\`` as shipped and are relative to the list file's folder (or ``images_root``).
    """
    root = images_root if images_root is not None else os.path.dirname(os.path.abspath(list_file))
    records = []
    for line, text in _lines(list_file, on_error):
        try:
            tokens = text.split()
            if len(tokens) != 15:
                raise DataError(list_file, f"expected 15 fields (path, x1..x5, y1..y5, gender, smile, glasses, "
                                           f"pose), got {len(tokens)}", line)
            values = _floats(tokens[1:], list_file, line, "MTFL values")
            attrs = values[10:]
            if not np.all(attrs == np.round(attrs)):
                raise DataError(list_file, f"attributes must be integers, got {attrs.tolist()}", line)
            records.append(FaceRecord(
                image_path=os.path.join(root, *tokens[0].replace("\\", "/").split("/")),
                points=values[:10].reshape(2, 5).T, scheme="mtfl_5",
                attributes={k: int(v) for k, v in zip(MTFL_ATTRIBUTES, attrs)}, source=f"{list_file}:{line}"))
        except DataError as err:
            _raise_or_report(err, on_error)
    return _finish(records, check_images, on_error)


# --- CelebA --------------------------------------------------------------------------------------------------

def _celeba_table(path: str, columns: int, what: str, on_error: OnError) -> dict:
    """CelebA list file: a count line, a header line, then ``NAME v1 .. vK`` rows → {name: (line, values)}."""
    rows = {}
    lines = list(_lines(path, on_error))
    if len(lines) < 2:
        raise DataError(path, f"truncated: a CelebA {what} file starts with a count line and a header line")
    try:
        declared = int(lines[0][1].strip())
    except ValueError:
        raise DataError(path, f"first line must be the number of images, got {lines[0][1].strip()[:40]!r}",
                        lines[0][0]) from None
    header = lines[1][1].split()
    if len(header) not in (columns, columns + 1):
        raise DataError(path, f"header must name {columns} columns, got {len(header)}", lines[1][0])
    for line, text in lines[2:]:
        try:
            tokens = text.split()
            if len(tokens) != columns + 1:
                raise DataError(path, f"expected the image name and {columns} values, got {len(tokens)} fields",
                                line)
            rows[tokens[0]] = (line, _floats(tokens[1:], path, line, what))
        except DataError as err:
            _raise_or_report(err, on_error)
    if declared != len(lines) - 2:
        _raise_or_report(DataError(path, f"first line says {declared} images, the file has {len(lines) - 2}"),
                         on_error)
    return rows


def read_celeba(landmarks: str, images_root: str, bbox: Optional[str] = None, check_images: bool = True,
                on_error: OnError = None) -> list:
    """CelebA ``list_landmarks_celeba.txt`` / ``list_landmarks_align_celeba.txt`` (+ ``list_bbox_celeba.txt``).

    Rows are ``NAME lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x ... rightmouth_y``; the
    box file (``NAME x_1 y_1 width height``) belongs to the in-the-wild images, not the aligned ones.
    """
    points = _celeba_table(landmarks, 10, "landmarks", on_error)
    boxes = _celeba_table(bbox, 4, "bbox", on_error) if bbox else {}
    records = []
    for name, (line, values) in points.items():
        try:
            box = None
            if bbox:
                if name not in boxes:
                    raise DataError(landmarks, f"{name} has no row in the bbox file {bbox}", line)
                box = tuple(float(v) for v in boxes[name][1])
            records.append(FaceRecord(image_path=os.path.join(images_root, name), points=values.reshape(5, 2),
                                      scheme="mtfl_5", box=box, source=f"{landmarks}:{line}"))
        except DataError as err:
            _raise_or_report(err, on_error)
    return _finish(records, check_images, on_error)


# --- MATLAB files (COFW, AFLW2000-3D) ------------------------------------------------------------------------

def _load_mat(path: str):
    """``(kind, contents)``: ("v5", dict from scipy.io.loadmat) or ("v7.3", open h5py.File)."""
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    import h5py

    if h5py.is_hdf5(path):
        try:
            return "v7.3", h5py.File(path, "r")
        except Exception as e:  # noqa: BLE001 - any failure of a third-party parser is bad input here
            raise DataError(path, f"not a readable MATLAB v7.3 (HDF5) file ({type(e).__name__}: {e})") from None
    return "v5", _loadmat_isolated(path)


def _loadmat_isolated(path: str) -> dict:
    """``scipy.io.loadmat`` in a forked child, its result sent back pickled.

    scipy's v5 parser (Cython) can crash the process with a segmentation fault on a corrupted file (found by
    tests/test_readers.py's fuzzing: a few flipped bytes in a cell array); a crashed child becomes a DataError
    naming the file instead of taking the training run down. Without fork (Windows) it loads in-process.
    """
    import pickle

    import scipy.io

    def load():
        try:
            return "ok", scipy.io.loadmat(path)
        except Exception as e:  # noqa: BLE001 - scipy raises many types (ValueError, TypeError, OSError, ...)
            return "error", f"{type(e).__name__}: {str(e)[:120]}"

    if not hasattr(os, "fork"):
        kind, value = load()
    else:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: parse, send, leave without running the parent's exit handlers
            try:
                os.close(read_end)
                import faulthandler

                faulthandler.disable()  # a crash here is handled by the parent; no stack dump on stderr
                with os.fdopen(write_end, "wb") as out:
                    out.write(pickle.dumps(load(), protocol=pickle.HIGHEST_PROTOCOL))
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as inp:
            payload = inp.read()  # before waitpid: a large result must not fill the pipe while we wait
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) or not payload:
            why = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {status}"
            raise DataError(path, f"the MATLAB .mat parser (scipy) crashed on this file ({why}): corrupt or "
                                  "truncated")
        kind, value = pickle.loads(payload)
    if kind == "error":
        raise DataError(path, f"not a readable MATLAB .mat file ({value})")
    return value


def _as_rgb(image, path: str, index: int) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        if img.size and (np.nanmin(img) < 0 or np.nanmax(img) > 255):
            raise DataError(path, f"image #{index} is {img.dtype} with values outside 0..255")
        img = img.astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (1, 3) or min(img.shape[:2]) < 1:
        raise DataError(path, f"image #{index} has shape {img.shape}, expected HxW or HxWx3")
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img


def _cofw_keys(keys: Iterable[str], path: str) -> tuple:
    keys = list(keys)
    for suffix in ("Tr", "T", ""):
        if f"phis{suffix}" in keys and f"Is{suffix}" in keys:
            return f"Is{suffix}", f"phis{suffix}", f"bboxes{suffix}" if f"bboxes{suffix}" in keys else None
    raise DataError(path, "not a COFW file: expected the variables IsTr/phisTr[/bboxesTr] or IsT/phisT[/bboxesT], "
                          f"found {sorted(k for k in keys if not k.startswith('__'))}")


def read_cofw(mat_path: str, one_based: bool = True, check_images: bool = True, on_error: OnError = None) -> list:
    """COFW ``COFW_train.mat`` / ``COFW_test.mat`` (MATLAB v5, or v7.3 = HDF5).

    ``phis`` is N×87: 29 x, 29 y, 29 occlusion flags (1 = occluded → visibility 0); ``bboxes`` N×4 (x, y, w, h);
    ``Is`` holds the images themselves (grey or RGB), kept in ``FaceRecord.image``. Coordinates are MATLAB's
    1-based pixels, so 1 is subtracted (``one_based=False`` keeps them).
    """
    kind, mat = _load_mat(mat_path)
    try:
        image_key, phis_key, box_key = _cofw_keys(mat.keys(), mat_path)
        if kind == "v5":
            phis = np.asarray(mat[phis_key])
            boxes = np.asarray(mat[box_key]) if box_key else None
            images = np.asarray(mat[image_key], dtype=object).reshape(-1)
        else:
            # v7.3 stores MATLAB's column-major arrays transposed; cells are arrays of object references.
            phis = np.asarray(mat[phis_key]).T
            boxes = np.asarray(mat[box_key]).T if box_key else None
            images = [mat[ref] for ref in np.asarray(mat[image_key]).reshape(-1)]
        if phis.ndim != 2 or phis.shape[1] not in (58, 87):
            raise DataError(mat_path, f"{phis_key} has shape {phis.shape}, expected N×87 (or N×58 without flags)")
        if len(images) != len(phis):
            raise DataError(mat_path, f"{image_key} holds {len(images)} images but {phis_key} {len(phis)} faces")
        if boxes is not None and boxes.shape != (len(phis), 4):
            raise DataError(mat_path, f"{box_key} has shape {boxes.shape}, expected ({len(phis)}, 4)")
        offset = 1.0 if one_based else 0.0
        records = []
        for i in range(len(phis)):
            src = f"{mat_path}#{i}"
            try:
                row = _floats(phis[i].tolist(), src, None, phis_key)
                vis = None
                if phis.shape[1] == 87:
                    if not np.all(np.isin(row[58:], (0, 1))):
                        raise DataError(src, f"occlusion flags must be 0 or 1, got {sorted(set(row[58:]))[:5]}")
                    vis = 1.0 - row[58:]
                box = None
                if boxes is not None:
                    b = _floats(boxes[i].tolist(), src, None, box_key)
                    box = (b[0] - offset, b[1] - offset, b[2], b[3])
                img = images[i][()].T if kind == "v7.3" else images[i]
                records.append(FaceRecord(image_path="", points=np.stack([row[:29], row[29:58]], 1) - offset,
                                          scheme="cofw_29", visibility=vis, box=box, source=src,
                                          image=_as_rgb(img, mat_path, i)))
            except DataError as err:
                _raise_or_report(err, on_error)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OSError, RuntimeError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(mat_path, f"malformed COFW file ({type(e).__name__}: {str(e)[:120]})") from None
    finally:
        if kind == "v7.3":
            mat.close()
    return _finish(records, check_images, on_error)


def read_aflw2000_mat(mat_path: str, image_path: Optional[str] = None, landmarks: str = "pt3d_68") -> FaceRecord:
    """One AFLW2000-3D face: ``pt3d_68`` (3×68, x/y used) or ``pt2d`` (2×21 AFLW points, ears dropped → 19).

    ``Pose_Para`` (1×7: pitch, yaw, roll in radians, translation, scale) → ``attributes["pose_pyr"]`` (radians)
    and ``attributes["pose_deg"]``.
    """
    if landmarks not in ("pt3d_68", "pt2d"):
        raise ValueError(f"landmarks must be 'pt3d_68' or 'pt2d', got {landmarks!r}")
    kind, mat = _load_mat(mat_path)
    if kind != "v5":
        mat.close()
        raise DataError(mat_path, "AFLW2000-3D files are MATLAB v5; this one is HDF5 (v7.3)")
    if landmarks not in mat or "Pose_Para" not in mat:
        raise DataError(mat_path, f"missing variable {'Pose_Para' if landmarks in mat else landmarks} "
                                  f"(found {sorted(k for k in mat if not k.startswith('__'))})")
    arr = np.asarray(mat[landmarks])
    want = (3, 68) if landmarks == "pt3d_68" else (2, 21)
    if arr.ndim != 2 or arr.shape[1] != want[1] or arr.shape[0] < 2:
        raise DataError(mat_path, f"{landmarks} has shape {arr.shape}, expected {want}")
    xy = _floats(arr[:2].T.reshape(-1).tolist(), mat_path, None, landmarks).reshape(-1, 2)
    pose = _floats(np.asarray(mat["Pose_Para"]).reshape(-1)[:3].tolist(), mat_path, None, "Pose_Para")
    if pose.size != 3:
        raise DataError(mat_path, f"Pose_Para has {pose.size} values, expected at least 3 (pitch, yaw, roll)")
    vis = None
    if landmarks == "pt2d":
        xy = np.delete(xy, (12, 16), axis=0)  # AFLW's 21 points include the two ear lobes; aflw_19 drops them
        vis = np.all(xy >= 0, axis=1).astype(np.float32)  # -1 marks an unannotated point
        if not vis.any():
            raise DataError(mat_path, "pt2d has no annotated point")
        xy[vis == 0] = xy[vis > 0].mean(axis=0)
    if image_path is None:
        image_path = _image_beside(mat_path)
    return FaceRecord(image_path=image_path, points=xy, scheme="300w_68" if landmarks == "pt3d_68" else "aflw_19",
                      visibility=vis, source=mat_path,
                      attributes={"pose_pyr": tuple(float(v) for v in pose),
                                  "pose_deg": tuple(float(np.degrees(v)) for v in pose)})


def read_aflw2000(folder: str, landmarks: str = "pt3d_68", check_images: bool = True,
                  on_error: OnError = None) -> list:
    """Every ``imageNNNNN.mat`` in ``folder`` with the ``.jpg`` beside it."""
    if not os.path.isdir(folder):
        raise DataError(folder, "not found (expected the AFLW2000 folder of .mat + .jpg)")
    mats = sorted(f for f in os.listdir(folder) if f.lower().endswith(".mat"))
    if not mats:
        raise DataError(folder, "no .mat files found")
    records = []
    for name in mats:
        try:
            records.append(read_aflw2000_mat(os.path.join(folder, name), landmarks=landmarks))
        except DataError as err:
            _raise_or_report(err, on_error)
    return _finish(records, check_images, on_error)


# --- dlib imglab XML -----------------------------------------------------------------------------------------

def read_dlib_xml(xml_path: str, scheme: Optional[str] = None, check_images: bool = True,
                  on_error: OnError = None) -> list:
    """dlib imglab XML (``<image file=..><box top left width height><part name x y/>``), 0-based pixels.

    Part names are point indices (``'00'``..``'67'``); a missing part is an unannotated point (visibility 0,
    placed at the mean of the others). Boxes marked ``ignore='1'`` and boxes without parts are not faces with
    landmarks and are left out.
    """
    data = _read_bytes(xml_path)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise DataError(xml_path, f"not well-formed XML ({e})", e.position[0] if e.position else None) from None
    if root.tag != "dataset" or root.find("images") is None:
        raise DataError(xml_path, f"not a dlib imglab file: root <{root.tag}> without <images>")
    folder = os.path.dirname(xml_path)
    records = []
    for k, image in enumerate(root.find("images").iter("image")):
        file = image.get("file")
        for j, box in enumerate(image.findall("box")):
            src = f"{xml_path}#image{k}/box{j}"
            try:
                if file is None:
                    raise DataError(src, "<image> without a file= attribute")
                if box.get("ignore") in ("1", "true") or not box.findall("part"):
                    continue
                b = _floats([box.get(a) for a in ("left", "top", "width", "height")], src, None, "box")
                parts = {}
                for part in box.findall("part"):
                    name = part.get("name", "")
                    if not (name.isascii() and name.isdigit()):
                        raise DataError(src, f"part name {name[:20]!r} is not a point index")
                    if int(name) in parts:
                        raise DataError(src, f"part {name} appears twice")
                    parts[int(name)] = _floats([part.get("x"), part.get("y")], src, None, f"part {name}")
                n = max(parts) + 1
                name = _scheme_name(n, src, None, scheme)
                pts = np.zeros((n, 2))
                vis = np.zeros(n, np.float32)
                for i, p in parts.items():
                    pts[i], vis[i] = p, 1.0
                pts[vis == 0] = pts[vis > 0].mean(axis=0)
                records.append(FaceRecord(image_path=os.path.join(folder, file), points=pts, scheme=name,
                                          visibility=None if vis.all() else vis, box=tuple(b), source=src))
            except DataError as err:
                _raise_or_report(err, on_error)
    return _finish(records, check_images, on_error)


# --- menpo LJSON ---------------------------------------------------------------------------------------------

def parse_ljson(obj, path: str = "<ljson>") -> tuple:
    """(points [N, 2] as (x, y), visibility or None, group name) of a menpo LJSON object (v1/v2/v3).

    LJSON stores (y, x); null points are unannotated. For v3 files with several groups, the largest group whose
    size is a known scheme is used (e.g. ``LJSON`` with 68 points rather than ``pupils``).
    """
    if not isinstance(obj, dict):
        raise DataError(path, "LJSON must be a JSON object")
    if isinstance(obj.get("groups"), dict):
        candidates = []
        for gname, group in obj["groups"].items():
            marks = group.get("landmarks") if isinstance(group, dict) else None
            pts = marks.get("points") if isinstance(marks, dict) else None
            if isinstance(pts, list):
                candidates.append((gname, pts))
        known = [c for c in candidates if _known_count(len(c[1]))]
        if not known:
            raise DataError(path, f"no landmark group with a known point count (groups: "
                                  f"{[(g, len(p)) for g, p in candidates]})")
        gname, raw = max(known, key=lambda c: len(c[1]))
    elif isinstance(obj.get("landmarks"), dict) and isinstance(obj["landmarks"].get("points"), list):
        gname, raw = "landmarks", obj["landmarks"]["points"]
    else:
        raise DataError(path, "not menpo LJSON: no 'groups' or 'landmarks.points'")
    pts = np.zeros((len(raw), 2))
    vis = np.ones(len(raw), np.float32)
    for i, p in enumerate(raw):
        if p is None or (isinstance(p, list) and all(v is None for v in p)):
            vis[i] = 0.0
            continue
        if not isinstance(p, list) or len(p) != 2 or any(isinstance(v, bool) for v in p):
            raise DataError(path, f"point {i} of group {gname!r} is {str(p)[:40]}, expected [y, x]")
        y, x = _floats(p, path, None, f"point {i}")
        pts[i] = (x, y)
    if not vis.any():
        raise DataError(path, f"group {gname!r} has no annotated point")
    pts[vis == 0] = pts[vis > 0].mean(axis=0)
    return pts, (None if vis.all() else vis), gname


def _known_count(n: int) -> bool:
    try:
        scheme_for_count(n)
        return True
    except KeyError:
        return False


def _load_json(path: str):
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e.msg} (column {e.colno})", e.lineno) from None
    except RecursionError:
        raise DataError(path, "invalid JSON: nested too deeply") from None


def read_ljson(path: str, scheme: Optional[str] = None, check_images: bool = True, on_error: OnError = None) -> list:
    """One ``.ljson`` file or every ``.ljson`` under a folder; the image has the same stem beside it."""
    if os.path.isdir(path):
        paths = [os.path.join(d, f) for d, _, files in sorted(os.walk(path)) for f in sorted(files)
                 if f.lower().endswith(".ljson")]
        if not paths:
            raise DataError(path, "no .ljson files found")
    elif os.path.isfile(path):
        paths = [path]
    else:
        raise DataError(path, "not found (expected an .ljson file or a folder of them)")
    records = []
    for p in paths:
        try:
            pts, vis, _ = parse_ljson(_load_json(p), p)
            records.append(FaceRecord(image_path=_image_beside(p), points=pts, visibility=vis, source=p,
                                      scheme=_scheme_name(len(pts), p, None, scheme)))
        except DataError as err:
            _raise_or_report(err, on_error)
    return _finish(records, check_images, on_error)


# --- COCO-style JSON (mmpose face sets, COCO-WholeBody) ------------------------------------------------------

def _coco_keypoints(ann: dict, src: str):
    """(flat keypoint list, box, key) of one annotation; None when it carries no face (WholeBody bodies)."""
    if "face_kpts" in ann:
        valid = ann.get("face_valid", True)
        kp = ann["face_kpts"]
        if valid in (False, "False", "false", 0) or not isinstance(kp, list) or not any(kp):
            return None
        return kp, ann.get("face_box"), "face_kpts"
    if "keypoints" not in ann:
        raise DataError(src, "annotation has no 'keypoints'")
    return ann["keypoints"], ann.get("bbox"), "keypoints"


def read_coco(json_path: str, images_root: Optional[str] = None, scheme: Optional[str] = None,
              check_images: bool = True, on_error: OnError = None) -> list:
    """COCO-style keypoint JSON: ``images`` (id, file_name) + ``annotations`` (image_id, keypoints [x, y, v]*N,
    bbox [x, y, w, h]). COCO-WholeBody files use ``face_kpts``/``face_box``/``face_valid``; annotations without a
    valid face are left out. Visibility 0 for ``v == 0`` (unlabelled; placed at the mean of the labelled points)
    and for ``v == 1`` where the face also has ``v == 2`` points (labelled but occluded). Images are under
    ``images_root`` (default: the JSON's folder).
    """
    obj = _load_json(json_path)
    root = images_root if images_root is not None else os.path.dirname(json_path)
    if not isinstance(obj, dict) or not isinstance(obj.get("images"), list) \
            or not isinstance(obj.get("annotations"), list):
        raise DataError(json_path, "not a COCO-style file: expected an object with 'images' and 'annotations' lists")
    files = {}
    for k, im in enumerate(obj["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise DataError(json_path, f"images[{k}] needs 'id' and 'file_name'")
        files[str(im["id"])] = im["file_name"]
    records = []
    for k, ann in enumerate(obj["annotations"]):
        src = f"{json_path}#annotations[{k}]"
        try:
            if not isinstance(ann, dict):
                raise DataError(src, "annotation is not an object")
            got = _coco_keypoints(ann, src)
            if got is None:
                continue
            kp, box, key = got
            if str(ann.get("image_id")) not in files:
                raise DataError(src, f"image_id {str(ann.get('image_id'))[:20]} is not in 'images'")
            if not isinstance(kp, list) or not kp or len(kp) % 3:
                raise DataError(src, f"'{key}' must be a list of x, y, v triples, got {str(kp)[:40]}")
            v = _floats(kp, src, None, key).reshape(-1, 3)
            # COCO: 0 unlabelled, 1 labelled but occluded, 2 visible. Converters that write 1 for every point
            # (mmpose's 300W/WFLW files) mean "labelled", so 1 counts as occluded only next to 2s.
            vis = ((v[:, 2] == 2) if np.any(v[:, 2] == 2) else (v[:, 2] > 0)).astype(np.float32)
            if not np.any(v[:, 2] > 0):
                raise DataError(src, f"'{key}' has no annotated point")
            pts = v[:, :2].copy()
            pts[v[:, 2] <= 0] = pts[v[:, 2] > 0].mean(axis=0)
            b = None
            if box is not None:
                if not isinstance(box, list) or len(box) != 4:
                    raise DataError(src, f"box must be [x, y, w, h], got {str(box)[:40]}")
                b = tuple(float(x) for x in _floats(box, src, None, "box"))
            records.append(FaceRecord(
                image_path=os.path.join(root, files[str(ann["image_id"])]), points=pts,
                scheme=_scheme_name(len(pts), src, None, scheme), visibility=None if vis.all() else vis, box=b,
                attributes={"annotation_id": ann.get("id")}, source=src))
        except DataError as err:
            _raise_or_report(err, on_error)
    return _finish(records, check_images, on_error)


__all__ = ["DataError", "FaceRecord", "FAR_OUTSIDE", "IMAGE_EXTS", "check_record", "check_records", "image_size",
           "parse_ljson", "parse_pts", "read_aflw2000", "read_aflw2000_mat", "read_celeba", "read_coco",
           "read_cofw", "read_dlib_xml", "read_ljson", "read_mtfl", "read_pts", "read_pts_dir", "read_text",
           "read_wflw"]
