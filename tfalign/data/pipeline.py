"""The tf.data input pipeline: records → augmented, normalised, batched crops with masked targets.

Per sample (training): load the image (cv2, or ``record.image``) → square crop from the face box with detector-like
box jitter → random rotation / scale / translation → horizontal flip (each scheme's flip permutation), all composed
into ONE ``cv2.warpAffine`` → occlusion rectangles, blur, colour jitter, grayscale → normalise (per batch in TF,
bitwise equal to ``geometry.normalize``). The points go through
the same matrix, so they stay exactly on the image content. Evaluation (``training=False``) calls
:func:`tfalign.data.geometry.preprocess`, the function inference and the export contract use.

Several markups in one stream: the point layout is the concatenation of ``input_spec.schemes``; a record fills the
segment of its own scheme and every segment reachable with ``tfalign.schemes.conversion_matrix``; ``mask`` is 0 on
the other segments (a 5-point MTFL face trains the 5-point head of a (68, 5) model and not the 68-point one).

Randomness is keyed on (seed, position of the sample in the stream), and the shuffle is a stateless permutation per
epoch, so the content of every sample is reproducible; ``deterministic=True`` also fixes the order in which the
parallel map returns them, so the same seed gives the same batches.

The decode + warp + photometric work runs in ``tf.numpy_function`` (OpenCV releases the GIL in its kernels); the
measured throughput against a plain Python loop is in ``bench/data_pipeline.py``.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import cv2
import numpy as np

from tfalign import schemes as schemes_lib
from tfalign.data import face3d, geometry
from tfalign.data.records import DataError, FaceRecord


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; defaults follow the common face-alignment recipe (PIPNet, HRNet, SLPT).

    Probabilities are per sample. Sizes are fractions of the face box (``box_*``) or of the crop side.
    """
    box_shift: float = 0.05  # box centre jitter, uniform ± fraction of max(w, h): mimics detector boxes
    box_scale: float = 0.05  # box size jitter, side × U(1 - s, 1 + s)
    rotation: float = 30.0  # degrees, uniform ±
    scale: tuple = (0.8, 1.2)  # zoom of the face in the crop
    translate: float = 0.1  # uniform ± fraction of the crop side
    flip: float = 0.5
    occlusion: float = 0.3  # probability of occluding rectangles
    occlusion_max: int = 2  # 1..this many rectangles when occluding
    occlusion_size: tuple = (0.1, 0.4)  # rectangle side, fraction of the crop side
    blur: float = 0.2
    blur_sigma: tuple = (0.5, 2.0)  # Gaussian sigma in crop pixels
    brightness: float = 0.3  # multiply by U(1 - b, 1 + b)
    contrast: float = 0.3
    saturation: float = 0.3
    grayscale: float = 0.1  # probability of a gray (3 equal channels) sample

    def __post_init__(self):
        for name in ("flip", "occlusion", "blur", "grayscale"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"augment.{name} is a probability in [0, 1], got {v}")
        for name in ("box_shift", "box_scale", "rotation", "translate", "brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("scale", "occlusion_size", "blur_sigma"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"augment.{name} must be (low, high) with 0 < low <= high, got {(lo, hi)}")
        if self.box_scale >= 1 or self.brightness >= 1 or self.contrast >= 1 or self.saturation > 1:
            raise ValueError("augment.box_scale, brightness and contrast must be < 1 and saturation <= 1")
        if self.occlusion_max < 1:
            raise ValueError(f"augment.occlusion_max must be >= 1, got {self.occlusion_max}")

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation at all (training order and batching, evaluation crops)."""
        return cls(box_shift=0.0, box_scale=0.0, rotation=0.0, scale=(1.0, 1.0), translate=0.0, flip=0.0,
                   occlusion=0.0, blur=0.0, brightness=0.0, contrast=0.0, saturation=0.0, grayscale=0.0)


# --- per-record labels ------------------------------------------------------------------------------------------

def scheme_layout(scheme_names: Sequence[str]) -> list:
    """[(canonical scheme name, start, stop)] of the concatenated point layout."""
    out, start = [], 0
    for name in scheme_names:
        try:
            s = schemes_lib.get_scheme(name)
        except KeyError as exc:
            raise ValueError(f"input_spec.schemes: {exc.args[0]}") from None
        out.append((s.name, start, start + s.num_points))
        start += s.num_points
    return out


def flip_permutation(scheme_names: Sequence[str]) -> np.ndarray:
    """Flip permutation of the concatenated layout: each segment mirrored with its own scheme's permutation."""
    perm = []
    for name, start, _ in scheme_layout(scheme_names):
        perm.extend(start + i for i in schemes_lib.get_scheme(name).flip_permutation)
    return np.asarray(perm, np.int32)


def record_targets(record: FaceRecord, scheme_names: Sequence[str]) -> tuple:
    """(points [N, 2] image pixels, mask [N]) of a record in the concatenated layout of ``scheme_names``."""
    layout = scheme_layout(scheme_names)
    n = layout[-1][2]
    points = np.zeros((n, 2), np.float32)
    mask = np.zeros((n,), np.float32)
    try:
        own = schemes_lib.get_scheme(record.scheme).name
    except KeyError as exc:
        raise DataError(record.source or record.image_path, exc.args[0]) from None
    if record.num_points != schemes_lib.get_scheme(own).num_points:
        raise DataError(record.source or record.image_path,
                        f"{record.num_points} points but scheme {own} has {schemes_lib.get_scheme(own).num_points}")
    for name, start, stop in layout:
        try:
            m = schemes_lib.conversion_matrix(own, name)
        except KeyError:
            continue
        points[start:stop] = m @ record.points
        mask[start:stop] = 1.0
    if not mask.any():
        raise DataError(record.source or record.image_path,
                        f"scheme {own} is none of {[l[0] for l in layout]} and converts to none of them")
    return points, mask


def load_image(record: FaceRecord) -> np.ndarray:
    """RGB uint8 image of a record: ``record.image`` when set, else decoded from ``record.image_path``."""
    if record.image is not None:
        img = np.asarray(record.image)
        if img.dtype != np.uint8 or img.ndim not in (2, 3):
            raise DataError(record.source or "record.image", f"in-memory image must be uint8 HxW[x3], got "
                                                             f"{img.dtype} {img.shape}")
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        return img
    bgr = cv2.imread(record.image_path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(record.image_path, "cannot read the image (missing, unreadable or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --- one sample -------------------------------------------------------------------------------------------------

def augment_matrix(rng: np.random.Generator, box, input_spec, aug: AugmentConfig) -> tuple:
    """(3x3 image pixel → crop pixel matrix, flipped, rotation in degrees) of one random augmentation."""
    x, y, w, h = box
    size = max(w, h)
    dx, dy = rng.uniform(-aug.box_shift, aug.box_shift, 2) * size
    k = rng.uniform(1.0 - aug.box_scale, 1.0 + aug.box_scale)
    jittered = (x + dx + w * (1 - k) / 2, y + dy + h * (1 - k) / 2, w * k, h * k)
    cx, cy, side = geometry.crop_for_spec(jittered, input_spec)
    angle = rng.uniform(-aug.rotation, aug.rotation)
    zoom = rng.uniform(*aug.scale)
    shift = rng.uniform(-aug.translate, aug.translate, 2) * side
    m = geometry.to3x3(geometry.crop_affine((cx, cy), side, input_spec.height, input_spec.width))
    # Rotate/zoom about the crop centre in image space so a non-square input is not sheared.
    m = m @ geometry.similarity(angle, zoom, (cx, cy), shift)
    flipped = bool(rng.random() < aug.flip)
    if flipped:
        m = geometry.hflip(input_spec.width) @ m
    return m, flipped, angle


_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114])


def photometric(rng: np.random.Generator, crop: np.ndarray, aug: AugmentConfig) -> np.ndarray:
    """Occlusion rectangles, blur, colour jitter and grayscale on a uint8 RGB crop (a new array)."""
    h, w = crop.shape[:2]
    out = crop.copy()
    if rng.random() < aug.occlusion:
        for _ in range(int(rng.integers(1, aug.occlusion_max + 1))):
            rw, rh = (rng.uniform(*aug.occlusion_size, 2) * (w, h)).astype(int) + 1
            x0, y0 = int(rng.integers(0, max(1, w - rw))), int(rng.integers(0, max(1, h - rh)))
            if rng.random() < 0.5:
                out[y0:y0 + rh, x0:x0 + rw] = rng.integers(0, 256, 3, dtype=np.uint8)
            else:
                out[y0:y0 + rh, x0:x0 + rw] = rng.integers(0, 256, (min(rh, h - y0), min(rw, w - x0), 3),
                                                           dtype=np.uint8)
    if rng.random() < aug.blur:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(*aug.blur_sigma)))
    if aug.brightness or aug.contrast or aug.saturation:
        b = rng.uniform(1.0 - aug.brightness, 1.0 + aug.brightness)
        c = rng.uniform(1.0 - aug.contrast, 1.0 + aug.contrast)
        s = rng.uniform(1.0 - aug.saturation, 1.0 + aug.saturation)
        # brightness (x*b), contrast about the mean, saturation about the gray value are all linear in the pixel:
        # together one 3x4 colour matrix, applied by cv2.transform on uint8 (saturating) in a single pass.
        mu = float(np.mean(cv2.mean(out)[:3]))
        m = s * c * b * np.eye(3) + (1.0 - s) * c * b * np.tile(_GRAY_WEIGHTS, (3, 1))
        m = np.hstack([m, np.full((3, 1), (1.0 - c) * b * mu)])
        out = cv2.transform(out, m)
    if rng.random() < aug.grayscale:
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    return out


def _augment_pose(pose: np.ndarray, angle_deg: float, flipped: bool) -> np.ndarray:
    # In-plane rotation adds to roll exactly (Rz composes on the left); a mirror negates yaw and roll.
    p = np.array(pose, np.float32)
    p[2] += np.deg2rad(angle_deg)
    if flipped:
        p[1], p[2] = -p[1], -p[2]
    return p


def _pose_from_points(record: FaceRecord) -> np.ndarray:
    from tfalign.data.pose import estimate_pose
    where = record.source or record.image_path
    if record.image is not None:
        size = (record.image.shape[1], record.image.shape[0])
    else:
        from PIL import Image
        try:
            with Image.open(record.image_path) as im:  # reads the header only
                size = im.size
        except OSError as exc:
            raise DataError(where, f"cannot read the image size for the pose label ({exc})") from None
    try:
        return np.asarray(estimate_pose(record.points, size), np.float32)
    except ValueError as exc:
        raise DataError(where, f"no pose label: {exc}") from None


class _Source:
    """Everything a sample needs from the records, precomputed once; images decoded lazily (optionally cached)."""

    def __init__(self, records, input_spec, aug, training, seed, cache):
        self.records = records
        self.spec = input_spec
        self.aug = aug
        self.training = training
        self.seed = int(seed)
        self.cache = {} if cache else None
        self.perm = flip_permutation(input_spec.schemes)
        box_scheme = schemes_lib.get_scheme(input_spec.schemes[0]).name
        n = len(records)
        self.points = np.zeros((n, len(self.perm), 2), np.float32)
        self.mask = np.zeros((n, len(self.perm)), np.float32)
        self.boxes = np.zeros((n, 4), np.float64)
        self.pose = np.zeros((n, 3), np.float32)
        self.pose_mask = np.zeros((n,), np.float32)
        for i, rec in enumerate(records):
            if not isinstance(rec, FaceRecord):
                raise ValueError(f"records[{i}]: expected a FaceRecord, got {type(rec).__name__}")
            self.points[i], self.mask[i] = record_targets(rec, input_spec.schemes)
            self.boxes[i] = geometry.face_box(rec.points, rec.scheme, box_scheme)
            pyr = rec.attributes.get("pose_pyr") if rec.attributes else None
            if pyr is not None:
                self.pose[i] = np.asarray(pyr, np.float32).reshape(3)
                self.pose_mask[i] = 1.0
            elif "pose" in input_spec.extras and schemes_lib.get_scheme(rec.scheme).name == face3d.SCHEME:
                # No pose label (LFPW, 300-W): solvePnP of the annotated points against the 3D mean face.
                self.pose[i] = _pose_from_points(rec)
                self.pose_mask[i] = 1.0
            if rec.image is None and not os.path.isfile(rec.image_path):
                raise DataError(rec.source or rec.image_path, f"image file not found: {rec.image_path!r}")

    def image(self, i: int) -> np.ndarray:
        if self.cache is not None:
            img = self.cache.get(i)
            if img is None:
                img = self.cache[i] = load_image(self.records[i])
            return img
        return load_image(self.records[i])

    def _view(self, img, i, rng):
        spec = self.spec
        # Images leave here as uint8 in the model's channel layout; geometry.normalize_tensor finishes them per batch.
        if rng is None:
            m, flipped, angle = geometry.to3x3(geometry.box_affine(self.boxes[i], spec)), False, 0.0
            crop = geometry.crop_image(img, self.boxes[i], spec)
        else:
            m, flipped, angle = augment_matrix(rng, self.boxes[i], spec, self.aug)
            crop = photometric(rng, geometry.warp(img, m, spec.height, spec.width), self.aug)
        image = geometry.model_channels(crop, spec)
        points = geometry.points_to_crop(self.points[i], m, spec)
        mask = self.mask[i]
        if flipped:
            points, mask = points[self.perm], mask[self.perm]
        return image, points * mask[:, None], mask, m, flipped, _augment_pose(self.pose[i], angle, flipped)

    def sample(self, index, position):
        i = int(index)
        img = self.image(i)
        rng = np.random.default_rng([self.seed, int(position)]) if self.training else None
        image, points, mask, m, flipped, pose = self._view(img, i, rng)
        out = [image, points, mask, np.int64(i), m[:2].astype(np.float32)]
        if "pose" in self.spec.extras:
            out += [pose, np.float32(self.pose_mask[i])]
        if self.spec.pair:
            image2, points2, mask2, m2, flipped2, _ = self._view(img, i, rng)
            norm = geometry.normalization_matrix(self.spec.height, self.spec.width)
            to2 = norm @ m2 @ np.linalg.inv(m) @ np.linalg.inv(norm)
            pair_index = self.perm if flipped != flipped2 else np.arange(len(self.perm), dtype=np.int32)
            out += [image2, points2, mask2, to2[:2].astype(np.float32), pair_index.astype(np.int32)]
        return out


def _output_keys(input_spec):
    h, w, c = input_spec.height, input_spec.width, input_spec.channels
    n = input_spec.num_points
    keys = [("image", "uint8", (h, w, c)), ("points", "float32", (n, 2)), ("mask", "float32", (n,)),
            ("index", "int64", ()), ("crop_affine", "float32", (2, 3))]
    if "pose" in input_spec.extras:
        keys += [("pose", "float32", (3,)), ("pose_mask", "float32", ())]
    if input_spec.pair:
        keys += [("image2", "uint8", (h, w, c)), ("points2", "float32", (n, 2)), ("mask2", "float32", (n,)),
                 ("affine", "float32", (2, 3)), ("pair_index", "int32", (n,))]
    return keys


KNOWN_EXTRAS = ("pose",)


def make_dataset(records: Sequence[FaceRecord], input_spec, *, training: bool, batch_size: int, seed: int = 0,
                 augment: Optional[AugmentConfig] = None, shuffle: Optional[bool] = None, cache: bool = False,
                 deterministic: bool = False, drop_remainder: Optional[bool] = None, repeat: bool = False):
    """A ``tf.data.Dataset`` of dict batches for ``input_spec``.

    Keys: ``image`` [B, H, W, C] float32 normalised, ``points`` [B, N, 2] normalised crop coordinates (edge
    origin), ``mask`` [B, N] (1 = annotated), ``index`` [B] (position in ``records``), ``crop_affine`` [B, 2, 3]
    (image pixel → crop pixel of this view, augmentation included). With ``"pose" in input_spec.extras``: ``pose``
    [B, 3] (pitch, yaw, roll, radians, ``face3d`` convention, updated for rotation and flip; the record's
    ``pose_pyr``, else ``tfalign.data.pose.estimate_pose`` of its points for 68-point records) and ``pose_mask`` [B].
    With ``input_spec.pair``: ``image2``/``points2``/``mask2`` (a second, independent augmentation), ``affine``
    [B, 2, 3] mapping view-1 normalised coordinates to view-2 normalised coordinates, and ``pair_index`` [B, N]:
    ``points2[b, i] == affine[b] @ points[b, pair_index[b, i]]`` (the views may differ by a mirror).

    Args:
        records: ``FaceRecord`` list (any mix of schemes reachable from ``input_spec.schemes``).
        input_spec: ``tfalign.models.base.InputSpec``.
        training: augment (``augment``, default :class:`AugmentConfig`) or not (evaluation preprocessing).
        batch_size: faces per batch.
        seed: seeds the shuffle and every random augmentation.
        shuffle: a new stateless permutation each epoch; default ``training``.
        cache: keep decoded images in memory after first use (augmentation still runs every time).
        deterministic: the parallel map keeps order, so the same seed gives the same batches.
        drop_remainder: default ``training``.
        repeat: endless stream of epochs (each reshuffled) instead of one pass.

    Example:
        >>> spec = InputSpec(height=128, width=128, schemes=("300w_68", "mtfl_5"))
        >>> records = load_records("300w:../shared/data/lfpw/trainset") + load_records("mtfl:.../training.txt")
        >>> for batch in make_dataset(records, spec, training=True, batch_size=16, repeat=True).take(100):
        ...     loss = masked_point_loss(model(batch["image"])["landmarks"], batch["points"], batch["mask"])
    """
    from tfalign._keras import tf

    records = list(records)
    if not records:
        raise ValueError("records: empty list, nothing to feed")
    if int(batch_size) != batch_size or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    unknown = sorted(set(input_spec.extras) - set(KNOWN_EXTRAS))
    if unknown:
        raise ValueError(f"input_spec.extras: unknown extra(s) {unknown}; the pipeline provides {list(KNOWN_EXTRAS)}")
    if augment is None:
        augment = AugmentConfig()
    elif not isinstance(augment, AugmentConfig):
        raise ValueError(f"augment must be an AugmentConfig, got {type(augment).__name__}")
    shuffle = training if shuffle is None else shuffle
    drop_remainder = training if drop_remainder is None else drop_remainder
    source = _Source(records, input_spec, augment, training, seed, cache)
    keys = _output_keys(input_spec)
    n = len(records)
    seed = int(seed)

    def epoch_indices(epoch):
        if not shuffle:
            return tf.data.Dataset.range(n)
        noise = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(tf.cast(tf.argsort(noise), tf.int64))

    epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    ds = epochs.flat_map(epoch_indices).enumerate()

    def load(position, index):
        outs = tf.numpy_function(source.sample, [index, position], [getattr(tf, t) for _, t, _ in keys],
                                 stateful=False)
        batch = {}
        for (name, _, shape), value in zip(keys, outs):
            value.set_shape(shape)
            batch[name] = value
        return batch

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)

    def normalize(batch):
        for name in ("image", "image2"):
            if name in batch:
                batch[name] = geometry.normalize_tensor(batch[name], input_spec)
        return batch

    ds = ds.map(normalize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return ds.prefetch(tf.data.AUTOTUNE)
