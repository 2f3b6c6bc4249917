"""PIPNet (Jin et al., "Pixel-in-Pixel Net", IJCV 2021): PIP regression + neighbour regression module (NRM).

Paper sections implemented here:
    * §3.1 PIP regression: on the stride-S feature map (8×8 for 256×256 at S=32) 1×1 convolutions predict, per
      landmark, a score map and x/y offsets inside each grid cell, relative to the cell's top-left corner.
      Loss (eq. 1-3): L2 on every score cell, L1 on the offsets at the positive cell only.
    * §3.2 NRM: each landmark also predicts the offsets of its C = 10 nearest landmarks on the training mean face
      (eq. 5-6, L1 at the positive cell). At inference each landmark averages its own prediction with the
      predictions other landmarks made of it.
    * §3.3 STC: optional score heads at strides 2S and 4S (Tasks 2 and 1); the curriculum loop is
      ``tfalign.stc``. As in the authors' code, the extra heads are the same 1×1 score convolution applied to
      2×2 max-pooled features (``networks_gssl.py``), so they add no parameters.
    * §4.1.2 defaults: 256×256 RGB, stride 32, α = β = 0.1 (0.02 / 0.125 / 0.25 at strides 16 / 64 / 128),
      Adam 1e-4 decayed ×0.1 at epochs 30 and 50, batch 16, 60 epochs.

Decoding happens in the graph (``PIPDecode``) with builtin TFLite ops that survive full-int8 conversion: ARG_MAX
picks the cell, a one-hot mask times the (cell index + offset) maps summed over cells gathers its values, and the
NRM average is one constant matrix product. ``outputs["landmarks"]`` is [B, N, 2] normalised (edge origin); the
raw maps stay available as the other outputs.

Differences from the authors' code, on purpose:
    * The NRM average is the exact mean the paper describes; the reference pads each landmark's list of
      neighbour predictions to a common length by repeating entries, which weights some of them twice.
    * Loss normalisation follows eq. 2, 3 and 6 (means over cells / positives); the reference sums the x and y
      terms with weights 10 and 1, i.e. the same balance up to a factor 2 on the regression terms.
    * Unannotated points (mask 0, e.g. 68-point heads on 5-point MTFL faces) are excluded from every term.
    * Several markups (``input.schemes = ["300w_68", "mtfl_5"]``) get one channel per point of each; NRM
      neighbours are taken within each markup (:func:`scheme_neighbors`), so a 5-point face trains only the
      5-point channels (and the shared backbone) and the 68 points decode as in a 68-point model.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Optional

import numpy as np

from tfalign._keras import keras, layers, register, tf
from tfalign.models.backbones import STRIDES, build_backbone, get_backbone
from tfalign.data.targets import nearest_neighbors, pip_targets
from tfalign.models.base import (CONFIG_FILE, WEIGHTS_FILE, Architecture, InputSpec, TrainSpec, load_weights_folder,
                                 register_architecture, register_preset, save_weights_folder)

# §4.1.2: α and β per network stride, chosen so the classification and regression losses are comparable.
PAPER_LOSS_WEIGHTS = {16: 0.02, 32: 0.1, 64: 0.125, 128: 0.25}

# Training mean faces (normalised crop coordinates) that define the neighbours when the config names none.
MEAN_FACE_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "weights", "pipnet_mbv3",
                              "meanface.json")

# Which Task of §3.3 a sample trains: labelled data always Task 3; pseudo-labels move 1 → 2 → 3.
TASK_COARSE_128, TASK_COARSE_64, TASK_PIP = 1, 2, 3


DECODES = ("cells", "maps")


@dataclasses.dataclass(frozen=True)
class PIPNetConfig:
    """PIPNet with the paper's defaults (§4.1.2).

    Attributes:
        backbone: a name from ``tfalign.models.backbones`` (``resnet18``, ``mobilenet_v2``,
            ``mobilenet_v3_small``, ``mobilenet_v3_large``).
        backbone_weights: optional local ``.h5`` with backbone weights (e.g. ImageNet), loaded by layer name.
        stride: network stride S (16, 32, 64, 128); the heat map is H/S × W/S.
        num_neighbors: C, neighbours per landmark in the NRM (0 disables the NRM).
        neighbors: explicit [N][C] neighbour indices; empty → computed from the packaged training mean face
            (``MEAN_FACE_FILE``) of ``input.schemes``.
        alpha, beta: offset / neighbour loss weights; None → the paper's value for ``stride``.
        stc: add the stride-2S and 4S score heads used by self-training with curriculum.
        head_init_std: std of the normal initialisation of the 1×1 heads (0.001 in the authors' code).
        decode: how the exported (inference) model decodes. ``cells``: the offset and neighbour 1×1 heads are
            evaluated only at each landmark's best cell (:class:`PIPCellHeads`), the same numbers as ``maps``
            without computing the maps nobody reads — at stride 32 those heads are a quarter of
            pipnet_mbv3's MACs; kept float (``float_cell_heads``) they make int8 exports cost +1.0 % NME
            instead of the int8 maps' +3.4 %. ``maps``: all maps, then
            :class:`PIPDecode`. Training always computes every map.
        float_cell_heads: with ``decode="cells"``, keep the best-cell heads float in int8 exports (more accurate,
            +4.3 MB for pipnet_mbv3; see :class:`PIPCellHeads`).
    """
    input: InputSpec = dataclasses.field(default_factory=InputSpec)
    train: TrainSpec = dataclasses.field(default_factory=TrainSpec)
    backbone: str = "resnet18"
    backbone_weights: Optional[str] = None
    stride: int = 32
    num_neighbors: int = 10
    neighbors: tuple = ()
    alpha: Optional[float] = None
    beta: Optional[float] = None
    stc: bool = False
    head_init_std: float = 0.001
    decode: str = "cells"
    float_cell_heads: bool = True

    def __post_init__(self):
        if self.decode not in DECODES:
            raise ValueError(f"decode must be one of {DECODES}, got '{self.decode}'")
        get_backbone(self.backbone)  # unknown names raise ValueError listing the known ones
        if self.stride not in STRIDES:
            raise ValueError(f"stride must be one of {STRIDES}, got {self.stride}")
        for side in (self.input.height, self.input.width):
            if side % self.stride or (self.stc and side % (self.stride * 4)):
                raise ValueError(f"input size {self.input.height}x{self.input.width} must be divisible by "
                                 f"{self.stride * (4 if self.stc else 1)} (stride {self.stride}"
                                 f"{', STC heads at 4x stride' if self.stc else ''})")
        n = self.input.num_points
        if not 0 <= self.num_neighbors < n:
            raise ValueError(f"num_neighbors must be in [0, {n - 1}] for {n} points, got {self.num_neighbors}")
        if self.neighbors:
            table = np.asarray(self.neighbors)
            if table.shape != (n, self.num_neighbors):
                raise ValueError(f"neighbors must be [{n}][{self.num_neighbors}] indices, got shape {table.shape} "
                                 "(set neighbors to [] to recompute them from the mean face of input.schemes)")
            if table.size and (table.min() < 0 or table.max() >= n or
                               np.any(table == np.arange(n)[:, None])):
                raise ValueError("neighbors: indices must be in [0, N) and exclude the landmark itself")
        for key in ("alpha", "beta"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ValueError(f"{key} must be >= 0, got {value}")

    @property
    def loss_weights(self) -> tuple[float, float]:
        default = PAPER_LOSS_WEIGHTS[self.stride]
        return (default if self.alpha is None else self.alpha, default if self.beta is None else self.beta)

    @property
    def grid(self) -> tuple[int, int]:
        return self.input.height // self.stride, self.input.width // self.stride


# --- mean face and neighbours (tfalign.data.targets.mean_shape / nearest_neighbors compute them) -------------
def load_mean_face(schemes, path: str = MEAN_FACE_FILE) -> np.ndarray:
    """Packaged mean face of the concatenated ``schemes``; a scheme without its own entry is converted from one
    that has (``tfalign.schemes.conversion_matrix``, e.g. 300w_68 → mtfl_5)."""
    from tfalign.schemes import conversion_matrix, get_scheme
    try:
        with open(path, encoding="utf-8") as fh:
            faces = json.load(fh)["mean_faces"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: cannot read the packaged mean faces ({exc}); pass config.neighbors") from None
    parts = []
    for name in schemes:
        key = get_scheme(name).name
        if key in faces:
            parts.append(np.asarray(faces[key], np.float64))
            continue
        for src, face in faces.items():
            try:
                parts.append(conversion_matrix(src, key) @ np.asarray(face, np.float64))
                break
            except KeyError:
                continue
        else:
            raise ValueError(f"{path}: no mean face for scheme '{key}' (has {sorted(faces)}); pass config.neighbors")
    return np.concatenate(parts, axis=0)


def mean_face_from_records(records, input_spec) -> np.ndarray:
    """Training mean face [N, 2] of ``records`` in the crop ``input_spec`` defines (normalised, edge origin),
    over the faces annotating each point (a 5-point face adds nothing to a 68-point mean)."""
    from tfalign.data import geometry
    from tfalign.data.pipeline import record_targets
    from tfalign.data.targets import mean_shape
    if not records:
        raise ValueError("mean face: no training records")
    box_scheme = input_spec.schemes[0]
    shapes, masks = [], []
    for rec in records:
        # The pipeline's crop: the face box of the first scheme's points (tfalign.data.pipeline).
        affine = geometry.box_affine(geometry.face_box(rec.points, rec.scheme, box_scheme), input_spec)
        pts, mask = record_targets(rec, input_spec.schemes)[:2]
        shapes.append(geometry.points_to_crop(pts, affine, input_spec))
        masks.append(mask)
    return mean_shape(np.stack(shapes), np.stack(masks))


def write_mean_face(path: str, face, scheme: str, source: str) -> None:
    """Add/replace ``scheme``'s mean face in the JSON file ``load_mean_face`` reads (atomic write)."""
    from tfalign.io import atomic_write_json
    data = {"mean_faces": {}}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    data.setdefault("sources", {})[scheme] = source
    data["mean_faces"][scheme] = np.round(np.asarray(face, np.float64), 5).tolist()
    atomic_write_json(path, data)


def resolve_neighbors(config: PIPNetConfig) -> np.ndarray:
    """[N, C] neighbour indices: ``config.neighbors`` or the packaged mean face's nearest landmarks."""
    return _neighbors(tuple(config.input.schemes), config.num_neighbors, config.neighbors).copy()


@functools.lru_cache(maxsize=16)
@tf.autograph.experimental.do_not_convert  # plain NumPy, run once per config while the loss is traced
def _neighbors(schemes: tuple, num_neighbors: int, explicit: tuple) -> np.ndarray:
    if explicit:
        return np.asarray(explicit, np.int32).reshape(-1, num_neighbors)
    return scheme_neighbors(load_mean_face(schemes), schemes, num_neighbors)


def scheme_neighbors(mean_face, schemes, num_neighbors: int) -> np.ndarray:
    """[N, C] NRM neighbours of the concatenated ``schemes``: each landmark's C nearest landmarks *of its own
    scheme* on ``mean_face`` [N, 2].

    Why not the nearest of all N: converted points coincide with points of another scheme (mtfl_5's nose and mouth
    corners are 300w_68's 30, 48 and 54), so they would fill neighbour slots with zero-distance copies, and the
    68-point output would be averaged with predictions of the 5-point heads, which MTFL faces train to MTFL's own
    notion of those points. Per scheme, each markup decodes exactly as a model of that markup alone does.
    A scheme with at most C points cycles through its C' = size - 1 neighbours (nearest first); the repeats are
    separate output channels, so they are extra predictions of the same neighbours, not shared weights (the
    authors' code pads its neighbour lists by repetition too).
    """
    from tfalign.data.pipeline import scheme_layout
    face = np.asarray(mean_face, np.float64)
    layout = scheme_layout(schemes)
    if face.shape != (layout[-1][2], 2):
        raise ValueError(f"mean face must be [{layout[-1][2]}, 2] for schemes {list(schemes)}, got {face.shape}")
    out = np.zeros((len(face), num_neighbors), np.int32)
    if not num_neighbors:
        return out
    for name, start, stop in layout:
        size = stop - start
        if size < 2:
            raise ValueError(f"scheme {name} has {size} point: no neighbours of its own (set num_neighbors=0)")
        own = nearest_neighbors(face[start:stop], min(num_neighbors, size - 1))
        out[start:stop] = own[:, np.arange(num_neighbors) % own.shape[1]] + start
    return out


def nrm_merge_matrix(neighbors) -> np.ndarray:
    """[N, N + N*C] matrix averaging each landmark's own prediction with every prediction of it made by the
    landmarks that have it as a neighbour (§3.2). Columns: N own predictions, then (landmark j, neighbour c) at
    ``N + j*C + c``."""
    nb = np.asarray(neighbors, np.int64)
    n, c = nb.shape
    m = np.zeros((n, n + n * c), np.float32)
    m[np.arange(n), np.arange(n)] = 1.0
    for j in range(n):
        for k in range(c):
            m[nb[j, k], n + j * c + k] = 1.0
    return m / m.sum(axis=1, keepdims=True)


# --- in-graph decoding ----------------------------------------------------------------------------------------
def _argmax_cells(score, dtype=tf.float32):
    """Each landmark's best cell of ``score`` [B, H, W, N]: (row-major index [B, N], its column, its row)."""
    h, w, n = int(score.shape[1]), int(score.shape[2]), int(score.shape[3])
    best = tf.argmax(tf.reshape(score, [-1, h * w, n]), axis=1, output_type=tf.int32)  # [B, N] (ARG_MAX)
    return best, tf.cast(best % w, dtype), tf.cast(best // w, dtype)


def decode_pip(score, offset_x, offset_y, neighbor_x=None, neighbor_y=None, merge=None):
    """Landmarks [B, N, 2] (normalised, edge origin) from PIP maps; see :class:`PIPDecode`."""
    h, w, n = int(score.shape[1]), int(score.shape[2]), int(score.shape[3])
    hw = h * w
    best, col, row = _argmax_cells(score, score.dtype)
    # GATHER moves int8 values without requantizing them, so the picked offsets are exact in a full-int8 model
    # (an int8 ONE_HOT × map product is not: its off value does not survive the zero point).
    own = best * n + tf.range(n)[None, :]  # index into the row-major [HW, N] map

    def pick(maps, index, channels):
        return tf.gather(tf.reshape(maps, [-1, hw * channels]), index, batch_dims=1)
    x, y = col + pick(offset_x, own, n), row + pick(offset_y, own, n)
    if neighbor_x is not None and merge is not None:
        c = int(neighbor_x.shape[-1]) // n
        idx = tf.reshape(best[:, :, None] * (n * c) + tf.constant(np.arange(n * c, dtype=np.int32).reshape(n, c)),
                         [-1, n * c])
        nb_x = tf.repeat(col, c, axis=1) + pick(neighbor_x, idx, n * c)  # [B, N*C], landmark-major
        nb_y = tf.repeat(row, c, axis=1) + pick(neighbor_y, idx, n * c)
        m = tf.constant(np.asarray(merge, np.float32).T)  # [N + N*C, N]: the NRM average as one matmul
        x = tf.matmul(tf.concat([x, nb_x], axis=1), m)
        y = tf.matmul(tf.concat([y, nb_y], axis=1), m)
    return tf.stack([x / float(w), y / float(h)], axis=-1)


@register("PIPDecode")
class PIPDecode(keras.layers.Layer):
    """Inputs ``[score, offset_x, offset_y]`` or ``[..., neighbor_x, neighbor_y]`` → landmarks [B, N, 2].

    ``neighbors`` [N][C] fixes the NRM average; it is stored in the layer config so an exported model needs no
    data. With no neighbours the prediction is the best cell plus its own offsets.
    """

    def __init__(self, neighbors=(), **kwargs):
        super().__init__(**kwargs)
        self.neighbors = [list(map(int, r)) for r in neighbors]
        self._merge = nrm_merge_matrix(self.neighbors) if self.neighbors and self.neighbors[0] else None

    def call(self, inputs):
        if self._merge is None:
            return decode_pip(*inputs[:3])
        return decode_pip(*inputs, merge=self._merge)

    def get_config(self):
        return {**super().get_config(), "neighbors": self.neighbors}


@register("PIPCellHeads")
class PIPCellHeads(keras.layers.Layer):
    """Inputs ``[features [B, H, W, F], score [B, H, W, N]]`` → [B, N, 2 + 2C]: the offset and neighbour 1×1 heads
    evaluated only at each landmark's best cell (own x, own y, C neighbour x, C neighbour y), in cell units.

    The heads are linear, so their value at a cell is that cell's feature vector times the head's kernel column:
    each landmark's feature vector at its best cell is gathered and multiplied by its own [F, 2 + 2C] kernel slice
    (one grouped CONV_2D), instead of computing N·(2 + 2C) maps over every cell and reading one cell of each.

    The weights are copies of the training model's ``pip_offset_*`` / ``pip_neighbor_*`` kernels (see
    :meth:`PIPNet.inference_model`). ``keep_float``: stay float in int8 exports. Measured on pipnet_mbv3 (LFPW
    val): int8 with float cell heads 5.42 % NME vs 5.37 % float, with int8 ones 5.54 % — their input, the
    backbone's last 960 hard-swish features, loses too much at one int8 scale — at the cost of 1.4 M float32
    weights (+4.3 MB).
    """

    def __init__(self, num_neighbors: int = 0, keep_float: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_neighbors = int(num_neighbors)
        self.keep_float = bool(keep_float)
        # The exporter's per-layer switch (mobile_export.tflite, quantization.presets.keeps_float).
        self.keep_float_in_int8 = self.keep_float

    def build(self, input_shape):
        feat_shape, score_shape = input_shape
        f, n = int(feat_shape[-1]), int(score_shape[-1])
        k = 2 + 2 * self.num_neighbors
        # A grouped 1×1 convolution over the N gathered vectors (group i = landmark i): one CONV_2D whose int8
        # weights are quantized per output channel, i.e. per landmark and value.
        self.kernel = self.add_weight(name="kernel", shape=(1, 1, f, n * k), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(n * k,), initializer="zeros")
        super().build(input_shape)

    def set_head_weights(self, offset_x, offset_y, neighbor_x=None, neighbor_y=None):
        """Fill from the 1×1 heads' ``(kernel [1, 1, F, K], bias [K])`` pairs (K = N or N·C, landmark-major)."""
        c = self.num_neighbors
        n = self.kernel.shape[-1] // (2 + 2 * c)
        heads = [(*offset_x, 1), (*offset_y, 1)] + ([(*neighbor_x, c), (*neighbor_y, c)] if c else [])
        kernel = np.concatenate([np.asarray(k, np.float32).reshape(-1, n, per) for k, _, per in heads], -1)
        self.kernel.assign(kernel.reshape(1, 1, -1, kernel.shape[1] * kernel.shape[2]))  # [F, N, K] → [1,1,F,N*K]
        bias = np.concatenate([np.asarray(b, np.float32).reshape(n, per) for _, b, per in heads], -1)
        self.bias.assign(bias.reshape(-1))

    def call(self, inputs):
        feats, score = inputs
        h, w, f = int(feats.shape[1]), int(feats.shape[2]), int(feats.shape[3])
        best, _, _ = _argmax_cells(score)
        n = int(score.shape[3])
        picked = tf.gather(tf.reshape(feats, [-1, h * w, f]), best, batch_dims=1)  # [B, N, F]
        vals = tf.nn.conv2d(tf.reshape(picked, [-1, 1, 1, n * f]), self.kernel, strides=1, padding="VALID")
        return tf.reshape(vals + self.bias, [-1, n, 2 + 2 * self.num_neighbors])

    def get_config(self):
        return {**super().get_config(), "num_neighbors": self.num_neighbors, "keep_float": self.keep_float}


@register("PIPCellDecode")
class PIPCellDecode(keras.layers.Layer):
    """Inputs ``[score [B, H, W, N], cell values [B, N, 2 + 2C] from PIPCellHeads]`` → landmarks [B, N, 2]: the best
    cell plus its offsets, averaged with the neighbours' predictions (NRM) — :class:`PIPDecode`'s numbers. Kept
    float in int8 exports (normalised coordinates at int8 resolution would cost ~1 px)."""

    keep_float_in_int8 = True

    def __init__(self, neighbors=(), **kwargs):
        super().__init__(**kwargs)
        self.neighbors = [list(map(int, r)) for r in neighbors]
        self._c = len(self.neighbors[0]) if self.neighbors and self.neighbors[0] else 0
        self._merge = nrm_merge_matrix(self.neighbors) if self._c else None

    def call(self, inputs):
        score, vals = inputs
        h, w, n, c = int(score.shape[1]), int(score.shape[2]), int(score.shape[3]), self._c
        _, col, row = _argmax_cells(score)
        vals = tf.cast(vals, tf.float32)
        x, y = col + vals[:, :, 0], row + vals[:, :, 1]
        if c:
            nb_x = tf.reshape(col[:, :, None] + vals[:, :, 2:2 + c], [-1, n * c])  # landmark-major, as PIPDecode
            nb_y = tf.reshape(row[:, :, None] + vals[:, :, 2 + c:], [-1, n * c])
            m = tf.constant(np.asarray(self._merge, np.float32).T)
            x = tf.matmul(tf.concat([x, nb_x], axis=1), m)
            y = tf.matmul(tf.concat([y, nb_y], axis=1), m)
        return tf.stack([x / float(w), y / float(h)], axis=-1)

    def get_config(self):
        return {**super().get_config(), "neighbors": self.neighbors}


# --- loss -------------------------------------------------------------------------------------------------------
def pip_loss(config: PIPNetConfig, outputs: dict, batch: dict, neighbors=None):
    """Eq. 5 (L = LS + α LO + β LN) with per-sample masks and the STC task of each sample.

    ``batch["stc_task"]`` [B] (optional, default 3): 3 = full PIP loss at stride S, 2 / 1 = score loss only at
    stride 2S / 4S (pseudo-labels early in the curriculum, §3.3).
    """
    if neighbors is None:
        neighbors = resolve_neighbors(config) if config.num_neighbors else None
    points = tf.cast(batch["points"], tf.float32)
    mask = tf.cast(batch["mask"], tf.float32)
    alpha, beta = config.loss_weights
    h, w = config.grid
    n = config.input.num_points
    task = batch.get("stc_task")
    if task is None:
        task_w = {TASK_PIP: tf.ones_like(mask[:, 0])}
    else:
        task = tf.cast(tf.reshape(task, [-1]), tf.int32)
        task_w = {t: tf.cast(tf.equal(task, t), tf.float32) for t in (TASK_COARSE_128, TASK_COARSE_64, TASK_PIP)}
    mask3 = mask * task_w[TASK_PIP][:, None]

    c = config.num_neighbors
    t = pip_targets(points, h, w, neighbors if c else np.zeros((n, 1), np.int32), mask=mask)
    # LS (eq. 2): mean squared error over every cell of every annotated map; with STC the three maps' cells are
    # pooled into one mean, as in the authors' code, each sample counting on the map of its task.
    sq_sum, cells = 0.0, 0.0
    maps = [(outputs["score"], t["score"], mask3)]
    if config.stc and task is not None:
        for key, factor, tid in (("score_s64", 2, TASK_COARSE_64), ("score_s128", 4, TASK_COARSE_128)):
            coarse = _coarse_scores(points, mask, h // factor, w // factor)
            maps.append((outputs[key], coarse, mask * task_w[tid][:, None]))
    for pred, target, m in maps:
        err = tf.square(tf.cast(pred, tf.float32) - target) * m[:, None, None, :]
        sq_sum += tf.reduce_sum(err)
        cells += tf.reduce_sum(m) * float(target.shape[1] * target.shape[2])
    loss_s = tf.math.divide_no_nan(sq_sum, cells)

    # LO, LN (eq. 3, 6): L1 at the positive cell only; the one-hot score target selects it.
    pos = t["score"] * mask3[:, None, None, :]
    diff = tf.abs(tf.cast(outputs["offset_x"], tf.float32) - t["offset_x"]) + \
        tf.abs(tf.cast(outputs["offset_y"], tf.float32) - t["offset_y"])
    loss_o = tf.math.divide_no_nan(tf.reduce_sum(diff * pos), 2.0 * tf.reduce_sum(mask3))
    terms = {"score": loss_s, "offset": loss_o}
    total = loss_s + alpha * loss_o
    if c:
        # Channel i*C + j of the neighbour maps belongs to landmark i: its positive cell is landmark i's.
        nb_pos = tf.repeat(t["score"], c, axis=-1) * tf.reshape(
            t["neighbor_mask"] * tf.repeat(task_w[TASK_PIP][:, None], n * c, axis=1), [-1, 1, 1, n * c])
        nb_diff = tf.abs(tf.cast(outputs["neighbor_x"], tf.float32) - t["neighbor_x"]) + \
            tf.abs(tf.cast(outputs["neighbor_y"], tf.float32) - t["neighbor_y"])
        loss_n = tf.math.divide_no_nan(tf.reduce_sum(nb_diff * nb_pos), 2.0 * tf.reduce_sum(nb_pos))
        terms["neighbor"] = loss_n
        total = total + beta * loss_n
    return total, terms


def _coarse_scores(points, mask, height, width):
    # Score targets only: pip_targets with one dummy neighbour, the neighbour maps are never read.
    n = points.shape[1]
    return pip_targets(points, height, width, np.zeros((n, 1), np.int32), mask=mask)["score"]


# --- the architecture -----------------------------------------------------------------------------------------
@register_architecture
class PIPNet(Architecture):
    name = "pipnet"
    config_class = PIPNetConfig

    def build(self, config: PIPNetConfig):
        spec = config.input
        n, c = spec.num_points, config.num_neighbors
        neighbors = resolve_neighbors(config) if c else np.zeros((n, 0), np.int32)
        image = keras.Input((spec.height, spec.width, spec.channels), name="image")
        feats = build_backbone(config.backbone, image, stride=config.stride, weights=config.backbone_weights,
                               input_mean=spec.mean, input_std=spec.std)

        def head(filters, name):
            return layers.Conv2D(filters, 1, name=name,
                                 kernel_initializer=keras.initializers.RandomNormal(stddev=config.head_init_std),
                                 bias_initializer="zeros")

        score_head = head(n, "pip_score")
        maps = {"score": score_head(feats), "offset_x": head(n, "pip_offset_x")(feats),
                "offset_y": head(n, "pip_offset_y")(feats)}
        decode_in = [maps["score"], maps["offset_x"], maps["offset_y"]]
        if c:
            maps["neighbor_x"] = head(n * c, "pip_neighbor_x")(feats)
            maps["neighbor_y"] = head(n * c, "pip_neighbor_y")(feats)
            decode_in += [maps["neighbor_x"], maps["neighbor_y"]]
        landmarks = PIPDecode(neighbors=neighbors.tolist(), name="landmarks")(decode_in)
        outputs = {"landmarks": landmarks, **maps}
        if config.stc:
            # Tasks 2 and 1 of §3.3: the shared score conv on max-pooled features (authors' networks_gssl.py).
            p64 = layers.MaxPooling2D(2, name="stc_pool_s64")(feats)
            p128 = layers.MaxPooling2D(2, name="stc_pool_s128")(p64)
            outputs["score_s64"] = score_head(p64)
            outputs["score_s128"] = score_head(p128)
        return keras.Model(image, outputs, name=f"pipnet_{config.backbone}")

    def loss(self, config: PIPNetConfig, outputs: dict, batch: dict):
        return pip_loss(config, outputs, batch)

    def inference_model(self, config: PIPNetConfig, model):
        """Landmarks only; with ``decode="cells"`` through :class:`PIPCellDecode` (see the config).

        Falls back to the full-map decode when the heads are not plain 1×1 ``Conv2D`` layers (e.g. wrapped by
        tfmot for QAT or pruning), whose kernels cannot be copied as they are.
        """
        names = ["pip_offset_x", "pip_offset_y"] + (["pip_neighbor_x", "pip_neighbor_y"] if config.num_neighbors
                                                     else [])
        heads = [_layer_or_none(model, name) for name in names]
        score_layer = _layer_or_none(model, "pip_score")
        plain = score_layer is not None and all(type(h) is layers.Conv2D for h in heads)
        if config.decode == "maps" or not plain:
            return super().inference_model(config, model)
        # The score map of *this* model's graph and the features it came from: a layer can have inbound nodes
        # in other graphs too (STC's pooled calls; a clone made by tfmot's strip_pruning), so they are found from
        # the model's own output rather than by node index.
        score = model.output["score"] if isinstance(model.output, dict) else None
        if score is None:
            return super().inference_model(config, model)
        layer, node_index, _ = score._keras_history
        if layer is not score_layer:
            return super().inference_model(config, model)
        feats = layer._inbound_nodes[node_index].input_tensors  # noqa: SLF001 - keras has no public node API
        neighbors = resolve_neighbors(config).tolist() if config.num_neighbors else []
        cells = PIPCellHeads(config.num_neighbors, keep_float=config.float_cell_heads, name="pip_cells")
        vals = cells([feats, score])
        cells.set_head_weights(*[(h.kernel.numpy(), h.bias.numpy()) for h in heads])
        out = PIPCellDecode(neighbors=neighbors, name="landmarks")([score, vals])
        return keras.Model(model.inputs, out, name=f"{model.name}_landmarks")


# The presets carry their neighbour table, so a run's config.json fixes it even if the mean face file changes.
_PRESET_NEIGHBORS = tuple(tuple(int(i) for i in row) for row in _neighbors(("300w_68",), 10, ()))
register_preset("pipnet_r18", "pipnet", {"backbone": "resnet18", "neighbors": _PRESET_NEIGHBORS},
                "PIPNet, ResNet-18, stride 32, C=10 (paper defaults, §4.1.2)")
register_preset("pipnet_mbv3", "pipnet", {"backbone": "mobilenet_v3_large", "neighbors": _PRESET_NEIGHBORS},
                "PIPNet, MobileNetV3-Large, stride 32, C=10; trained weights ship in tfalign/weights/pipnet_mbv3")


def _layer_or_none(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


# --- shipped weights (tfalign/weights/<preset>/: config.json + weights.npz, found by models.base.load_pretrained) --


def save_pretrained(model, config: PIPNetConfig, folder: str, dtype: str = "float16") -> str:
    """Write ``config.json`` (neighbour table included, so loading needs no data) and ``weights.npz`` atomically
    into ``folder`` (see ``base.save_weights_folder``)."""
    from tfalign.config import replace
    if config.num_neighbors and not config.neighbors:
        config = replace(config, neighbors=tuple(tuple(int(i) for i in r) for r in resolve_neighbors(config)))
    return save_weights_folder(model, config, folder, dtype)


def load_pretrained(folder: str):
    """``(keras.Model, PIPNetConfig)`` from a folder written by :func:`save_pretrained`; no data needed."""
    return load_weights_folder(PIPNet(), folder, "PIPNet")
