"""Stacked dense U-Nets with dual transformers (Guo, Deng, Xue, Zafeiriou, BMVC 2018).

Paper: ../shared/papers/stacked_dense_unet_dual_transformer.txt (§2, §3, §4.2, Table 1).

* Stem (§4.2): 3×3 conv → residual module → max pool, 128 → 64.
* Two stacked dense U-Nets with the simplified Scale Aggregation Topology, SAT (III): three down-sampling steps
  (64 → 8), aggregation nodes fed by the up-sampled coarser node, the direct lateral connection and (in the outer
  nodes) a down-sampled copy of the finer level, depthwise-separable convolutions. ``topology`` = unet |
  hourglass | sat3 lets Table 1's ordering be checked.
* Blocks (§2.2): CAB — channel-symmetric, branches before each channel decrease and merges before each
  increase, depthwise-separable convolutions and replication-based channel extension; ``block`` = resnet |
  inception | hpm | cab.
* Inside transformer (§3.1): a deformable convolution after each U-Net (``tfalign.layers.DeformableConv2D``, built
  on the shared bilinear sampler, builtin TFLite ops, int8 included); ``inside`` = deformable | stn | none.
* Outside transformer (§3.2): the coherent loss — an image and its transformed twin in one step, sigmoid
  cross-entropy against the ground truth for both, MSE between the twin's heatmaps and the transformed heatmaps
  of the original, λ = 0.001 (eq. 1 with the CE/MSE split of §4.2).
* Decode: heatmap argmax with quarter-pixel refinement towards the larger neighbour, in the graph.
"""
from __future__ import annotations

import dataclasses

from tfalign._keras import keras, layers, register, tf
from tfalign.layers import COORDINATE_SCOPE, DeformableConv2D, bilinear_sample
from tfalign.models.base import Architecture, InputSpec, TrainSpec, register_architecture, register_preset
from tfalign.schemes import get_scheme

TOPOLOGIES = ("unet", "hourglass", "sat3")
BLOCKS = ("resnet", "inception", "hpm", "cab")
INSIDE = ("deformable", "stn", "none")


@dataclasses.dataclass(frozen=True)
class DenseUNetConfig:
    """Defaults of §4.2 and the best row of Table 1 (SAT (III) 2-CAB (↓×3) + dual transformer).

    Attributes:
        num_stacks: stacked U-Nets (2), each with intermediate supervision.
        channels: feature width inside the U-Nets.
        down_steps: down-sampling steps of each U-Net (3: 64 → 8).
        topology / block / inside: see the module docstring.
        heatmap_sigma: Gaussian σ of the target heatmaps, in heatmap pixels (64×64 maps).
        coherent_weight: λ of the coherent loss (0.001); 0 disables the outside transformer.
    """
    num_stacks: int = 2
    channels: int = 256
    down_steps: int = 3
    topology: str = "sat3"
    block: str = "cab"
    inside: str = "deformable"
    heatmap_sigma: float = 1.0
    coherent_weight: float = 0.001
    input: InputSpec = InputSpec(height=128, width=128, channels=3, mean=127.5, std=127.5, crop_scale=1.25,
                                 schemes=("300w_68",), pair=True)
    # Nadam 2.5e-4, ×0.2 at 16k and 24k of 30k steps: the same fractions of the epoch budget.
    train: TrainSpec = TrainSpec(batch_size=40, epochs=60, optimizer="nadam", learning_rate=2.5e-4,
                                 schedule="step", milestones=(32, 48), decay=0.2)

    def __post_init__(self):
        for name, allowed in (("topology", TOPOLOGIES), ("block", BLOCKS), ("inside", INSIDE)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got '{getattr(self, name)}'")
        if self.channels % 4:
            raise ValueError(f"channels must be divisible by 4 (CAB halves twice), got {self.channels}")
        side = self.input.height // 2
        if self.input.height != self.input.width or side % (2 ** self.down_steps):
            raise ValueError(f"input must be square with side/2 divisible by 2^down_steps, got "
                             f"{self.input.height}x{self.input.width}, down_steps={self.down_steps}")
        if self.num_stacks < 1:
            raise ValueError(f"num_stacks must be >= 1, got {self.num_stacks}")


def _bn_relu(x, name):
    return layers.ReLU(name=f"{name}_relu")(layers.BatchNormalization(name=f"{name}_bn")(x))


def _sep(x, filters, name, kernel=3):
    """Depthwise-separable convolution + BN + ReLU."""
    x = layers.SeparableConv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_sep")(x)
    return _bn_relu(x, name)


@register("ReplicateChannels")
class ReplicateChannels(keras.layers.Layer):
    """Replication-based channel extension (§2.2): C → times·C by tiling, no parameters."""

    def __init__(self, times: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.times = int(times)

    @property
    def repeats_channels(self) -> int:  # channel pruning follows the tiling (quantization.channel_pruning)
        return self.times

    def call(self, x):
        return tf.concat([x] * self.times, axis=-1)

    def get_config(self):
        return {**super().get_config(), "times": self.times}


def block(x, filters, kind, name):
    """The building blocks of Fig. 3; all keep ``filters`` channels at the output."""
    if x.shape[-1] != filters:
        x = _bn_relu(layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj")(x), f"{name}_proj")
    if kind == "resnet":  # bottleneck residual (Fig. 3a)
        y = _bn_relu(layers.Conv2D(filters // 2, 1, use_bias=False, name=f"{name}_c1")(x), f"{name}_c1")
        y = _bn_relu(layers.Conv2D(filters // 2, 3, padding="same", use_bias=False, name=f"{name}_c2")(y),
                     f"{name}_c2")
        y = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_c3")(y)
        # Zero-initialised γ: every residual block starts as the identity. Without it the un-normalised branches
        # add up through the hourglass and the stacks (stack-2 heatmap logits had std 49 at initialisation, a
        # first loss of ~10^5 spent on shrinking them).
        y = layers.BatchNormalization(gamma_initializer="zeros", name=f"{name}_c3_bn")(y)
        return layers.Add(name=f"{name}_add")([x, y])
    if kind == "inception":  # parallel multi-scale residual (Fig. 3b)
        b1 = _bn_relu(layers.Conv2D(filters // 2, 1, use_bias=False, name=f"{name}_b1")(x), f"{name}_b1")
        b3 = _bn_relu(layers.Conv2D(filters // 4, 3, padding="same", use_bias=False, name=f"{name}_b3")(x),
                      f"{name}_b3")
        b5 = _bn_relu(layers.Conv2D(filters // 4, 3, padding="same", use_bias=False, name=f"{name}_b5a")(x),
                      f"{name}_b5a")
        b5 = _bn_relu(layers.Conv2D(filters // 4, 3, padding="same", use_bias=False, name=f"{name}_b5b")(b5),
                      f"{name}_b5b")
        return layers.Add(name=f"{name}_add")([x, layers.Concatenate(name=f"{name}_cat")([b1, b3, b5])])
    if kind == "hpm":  # hierarchical parallel multi-scale (Fig. 3c): C/2, C/4, C/4 chained 3×3 convs
        a = _bn_relu(layers.Conv2D(filters // 2, 3, padding="same", use_bias=False, name=f"{name}_h1")(x),
                     f"{name}_h1")
        b = _bn_relu(layers.Conv2D(filters // 4, 3, padding="same", use_bias=False, name=f"{name}_h2")(a),
                     f"{name}_h2")
        c = _bn_relu(layers.Conv2D(filters // 4, 3, padding="same", use_bias=False, name=f"{name}_h3")(b),
                     f"{name}_h3")
        return layers.Add(name=f"{name}_add")([x, layers.Concatenate(name=f"{name}_cat")([a, b, c])])
    # CAB (Fig. 3d): C → C/2 → C/4 → C/4, then back up; branch before each decrease, merge before each increase,
    # channels increased by replication.
    x1 = _sep(x, filters // 2, f"{name}_d1")
    x2 = _sep(x1, filters // 4, f"{name}_d2")
    y2 = _sep(x2, filters // 4, f"{name}_m")
    y1 = layers.Add(name=f"{name}_merge1")([ReplicateChannels(2, name=f"{name}_rep1")(y2), x1])
    y1 = _sep(y1, filters // 2, f"{name}_u1")
    return layers.Add(name=f"{name}_merge0")([ReplicateChannels(2, name=f"{name}_rep0")(y1), x])


def dense_unet(x, config: DenseUNetConfig, name: str):
    """One U-Net of the chosen topology at 64×64 → 64×64 features."""
    c, kind, steps = config.channels, config.block, config.down_steps
    enc = [block(x, c, kind, f"{name}_e0")]
    for level in range(1, steps + 1):
        down = layers.MaxPooling2D(2, name=f"{name}_pool{level}")(enc[-1])
        enc.append(block(down, c, kind, f"{name}_e{level}"))
    y = block(enc[-1], c, kind, f"{name}_bottom")
    for level in reversed(range(steps)):
        up = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up{level}")(y)
        lateral = enc[level]
        if config.topology == "hourglass":  # extra convolutions inside the lateral connection
            lateral = block(lateral, c, kind, f"{name}_lat{level}")
            y = layers.Add(name=f"{name}_agg{level}")([up, lateral])
        else:
            parts = [up, lateral]
            # SAT: aggregation nodes also take the finer level, down-sampled (kept in the outer nodes only in
            # SAT (III), where the inner down-sampling paths are removed).
            if config.topology == "sat3" and 0 < level and level >= steps - 1:
                finer = layers.MaxPooling2D(2, name=f"{name}_agg{level}_pool")(enc[level - 1])
                parts.append(_sep(finer, c, f"{name}_agg{level}_down"))
            y = layers.Concatenate(name=f"{name}_agg{level}")(parts)
        y = block(y, c, kind, f"{name}_d{level}")
    return y


@register("AffineFeatureWarp")
class AffineFeatureWarp(keras.layers.Layer):
    """STN (§3.1, Fig. 4a): a localisation network predicts an affine θ (initialised to identity) and the features
    are resampled with the shared bilinear sampler. Inputs: features [B, H, W, C]."""

    float_coordinates_in_int8 = True  # as DeformableConv2D: 8-bit sampling positions take quarter-pixel steps

    def build(self, input_shape):
        h, w = int(input_shape[1]), int(input_shape[2])
        self.loc = keras.Sequential([layers.GlobalAveragePooling2D(), layers.Dense(32, activation="relu"),
                                     layers.Dense(6, kernel_initializer="zeros",
                                                  bias_initializer=keras.initializers.Constant([1, 0, 0, 0, 1, 0]))])
        self.loc.build(input_shape)
        ys, xs = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij")
        # Normalised [-1, 1] grid so θ = identity maps every pixel to itself.
        self._grid = tf.stack([tf.reshape((xs + 0.5) / w * 2 - 1, [-1]), tf.reshape((ys + 0.5) / h * 2 - 1, [-1]),
                               tf.ones([h * w])], -1)  # [H·W, 3]
        super().build(input_shape)

    def call(self, x):
        h, w = x.shape[1], x.shape[2]
        theta = tf.reshape(self.loc(x), [-1, 2, 3])
        with tf.name_scope(COORDINATE_SCOPE):
            src = tf.einsum("pk,bjk->bpj", self._grid, theta)  # [B, H·W, 2] normalised
            pix = tf.stack([(src[..., 0] + 1) / 2 * w - 0.5, (src[..., 1] + 1) / 2 * h - 0.5], -1)
        return tf.reshape(bilinear_sample(x, pix), [-1, h, w, x.shape[-1]])


@register("HeatmapDecode")
class HeatmapDecode(keras.layers.Layer):
    """Heatmaps [B, H, W, N] → points [B, N, 2] normalised (edge origin): argmax cell, then a quarter-pixel
    step towards the larger neighbour in x and in y (the classic sub-pixel refinement). Exports as ARG_MAX,
    FLOOR_DIV/FLOOR_MOD and one GATHER of the neighbours' values.

    ``keep_float_in_int8``: decoded from int8 maps, the shipped dense_unet_w64 lost 0.08 NME points more than with
    this layer in float (PTQ, 32 calibration faces: 4.46 % against 4.38 %, float32 4.245 %; scratch measurement).
    The layer has no weights and reads 4·N values besides the arg-max, so float costs next to nothing."""

    keep_float_in_int8 = True

    def call(self, heatmaps):
        h, w, n = heatmaps.shape[1], heatmaps.shape[2], heatmaps.shape[3]
        flat = tf.reshape(heatmaps, [-1, h * w, n])
        idx = tf.argmax(flat, axis=1, output_type=tf.int32)  # [B, N]
        x = tf.cast(idx % w, tf.float32)
        y = tf.cast(idx // w, tf.float32)
        # Neighbour values of map n at (x±1, y) and (x, y±1), read by index from the flat maps: 4·N scalars. A
        # neighbour outside the map reads a clipped index and is masked below. (Sampling channel-major copies of
        # the maps padded the whole [N, H, W] stack first: 10 % of the model's float time, 15 % of its int8 time.)
        near = tf.clip_by_value(idx[..., None] + tf.constant([1, -1, w, -w]), 0, h * w - 1)  # [B, N, 4]
        rows = tf.reshape(tf.range(tf.shape(heatmaps)[0]) * (h * w), [-1, 1, 1])
        vals = tf.gather(tf.reshape(heatmaps, [-1]), (rows + near) * n + tf.reshape(tf.range(n), [1, n, 1]))
        # A neighbour outside the map loses: the step goes inwards. Masking its value with -1e9 instead put -1e9
        # into the heatmaps' int8 range (the quantizer gives the maps, their reshape, the gather and the select
        # one scale), so a single calibration face with a peak on the border flattened every map to one value.
        one = tf.ones_like(x)
        dx = tf.where(x >= w - 1, -one, tf.where(x <= 0, one, tf.sign(vals[..., 0] - vals[..., 1])))
        dy = tf.where(y >= h - 1, -one, tf.where(y <= 0, one, tf.sign(vals[..., 2] - vals[..., 3])))
        return tf.stack([(x + 0.25 * dx + 0.5) / w, (y + 0.25 * dy + 0.5) / h], -1)


def _prior_logit(config: DenseUNetConfig) -> float:
    """logit of the mean target value of a heatmap cell: 2πσ² of mass over (H/2)·(W/2) cells."""
    import math
    cells = (config.input.height // 2) * (config.input.width // 2)
    p = min(0.5, 2 * math.pi * config.heatmap_sigma ** 2 / cells)
    return math.log(p / (1 - p))


@register_architecture
class DenseUNet(Architecture):
    name = "dense_unet"
    config_class = DenseUNetConfig

    def build(self, config: DenseUNetConfig):
        spec = config.input
        n = get_scheme(spec.schemes[0]).num_points
        image = keras.Input((spec.height, spec.width, spec.channels), name="image")
        c = config.channels
        x = _bn_relu(layers.Conv2D(c // 2, 3, padding="same", use_bias=False, name="stem_conv")(image), "stem")
        x = block(x, c, "resnet", "stem_res")
        x = layers.MaxPooling2D(2, name="stem_pool")(x)  # 128 → 64 (§4.2)
        outputs = {}
        for stack in range(1, config.num_stacks + 1):
            y = dense_unet(x, config, f"u{stack}")
            if config.inside == "deformable":
                y = DeformableConv2D(c, 3, name=f"u{stack}_deform")(y)
                y = _bn_relu(y, f"u{stack}_deform")
            elif config.inside == "stn":
                y = AffineFeatureWarp(name=f"u{stack}_stn")(y)
            # Heatmaps start near the prior of a target cell (Σ of a Gaussian over the map / its area) instead of
            # p = 0.5 everywhere: the pixel-summed CE of eq. 1 then starts at ~50 per map instead of
            # H·W·ln 2 ≈ 2800, and the first steps learn the peaks, not the background.
            logits = layers.Conv2D(n, 1, kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3),
                                   bias_initializer=keras.initializers.Constant(_prior_logit(config)),
                                   name=f"u{stack}_heatmaps")(y)
            outputs[f"heatmaps{stack}"] = logits
            if stack < config.num_stacks:  # re-inject features and predictions into the next stack
                x = layers.Add(name=f"u{stack}_next")([x, layers.Conv2D(c, 1, name=f"u{stack}_feat_back")(y),
                                                       layers.Conv2D(c, 1, name=f"u{stack}_hm_back")(logits)])
        outputs["landmarks"] = HeatmapDecode(name="decode")(outputs[f"heatmaps{config.num_stacks}"])
        return keras.Model(image, outputs, name="dense_unet")

    def _heatmap_ce(self, config, logits, points, mask):
        from tfalign.data.targets import gaussian_heatmaps
        h, w = logits.shape[1], logits.shape[2]
        target = gaussian_heatmaps(points, h, w, config.heatmap_sigma)
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)  # [B, H, W, N]
        per_point = tf.reduce_sum(ce, axis=[1, 2]) * tf.cast(mask, ce.dtype)  # sum over pixels
        return tf.math.divide_no_nan(tf.reduce_sum(per_point), tf.reduce_sum(tf.cast(mask, ce.dtype)))

    def distill_loss(self, config: DenseUNetConfig, key, student, teacher):
        """Heatmaps: the loss of Eq. (1) with the teacher's probabilities as soft labels, less its value at the
        teacher itself, i.e. the per-cell Bernoulli KL(teacher ‖ student) summed over pixels and averaged over
        faces and points (the scale of ``ce``: weight 1 counts the teacher as much as the annotation). Matching
        the logits instead would spend the student's capacity on background cells at −20 that no decode reads."""
        if not key.startswith("heatmaps"):
            return None
        p = tf.sigmoid(teacher)
        kl = (tf.nn.sigmoid_cross_entropy_with_logits(labels=p, logits=student)
              - tf.nn.sigmoid_cross_entropy_with_logits(labels=p, logits=teacher))
        return tf.reduce_mean(tf.reduce_sum(kl, axis=[1, 2]))

    def loss(self, config: DenseUNetConfig, outputs, batch):
        """Eq. (1): CE(H(I), G) + CE(H(T·I), T·G) on every stack + λ·MSE(H(T·I), T⊙H(I)) on the last one.

        ``outputs`` may hold the twin's outputs under ``"twin"`` (the trainer runs the model on ``image2`` when
        the input spec asks for pairs and passes both).
        """
        parts, total = {}, 0.0
        for stack in range(1, config.num_stacks + 1):
            parts[f"ce{stack}"] = self._heatmap_ce(config, outputs[f"heatmaps{stack}"], batch["points"], batch["mask"])
            total += parts[f"ce{stack}"]
        twin = outputs.get("twin")
        if twin is not None:
            for stack in range(1, config.num_stacks + 1):
                parts[f"ce{stack}_twin"] = self._heatmap_ce(config, twin[f"heatmaps{stack}"], batch["points2"],
                                                            batch["mask2"])
                total += parts[f"ce{stack}_twin"]
            if config.coherent_weight:
                last = f"heatmaps{config.num_stacks}"
                parts["coherent"] = coherent_loss(outputs[last], twin[last], batch["affine"],
                                                  batch.get("pair_index"))
                total += config.coherent_weight * parts["coherent"]
        return total, parts


def transform_heatmaps(heatmaps, affine, pair_index=None):
    """T⊙H: resample heatmaps [B, H, W, N] of view 1 into view 2, given the 2×3 ``affine`` [B, 2, 3] that maps
    view-1 normalised coordinates to view-2 normalised coordinates. ``pair_index`` [B, N] (from the data pipeline)
    says which view-1 point each view-2 point is: a mirror between the views swaps left and right channels."""
    h, w, n = heatmaps.shape[1], heatmaps.shape[2], heatmaps.shape[3]
    a = tf.concat([tf.cast(affine, tf.float32), tf.tile(tf.constant([[[0.0, 0.0, 1.0]]]), [tf.shape(affine)[0], 1, 1])],
                  1)
    inv = tf.linalg.inv(a)[:, :2, :]
    ys, xs = tf.meshgrid((tf.range(h, dtype=tf.float32) + 0.5) / h, (tf.range(w, dtype=tf.float32) + 0.5) / w,
                         indexing="ij")
    grid = tf.stack([tf.reshape(xs, [-1]), tf.reshape(ys, [-1]), tf.ones([h * w])], -1)  # view-2 cells
    src = tf.einsum("pk,bjk->bpj", grid, inv)  # view-1 normalised
    pix = tf.stack([src[..., 0] * w - 0.5, src[..., 1] * h - 0.5], -1)
    warped = tf.reshape(bilinear_sample(heatmaps, pix), [-1, h, w, n])
    if pair_index is not None:
        warped = tf.gather(warped, tf.cast(pair_index, tf.int32), axis=3, batch_dims=1)
    return warped


def coherent_loss(logits1, logits2, affine, pair_index=None):
    """‖H(T·I) − T⊙H(I)‖² on heatmap probabilities, summed over pixels, averaged over landmarks and faces."""
    moved = transform_heatmaps(tf.sigmoid(logits1), affine, pair_index)
    # Cells that come from outside view 1 carry no prediction to agree with.
    valid = transform_heatmaps(tf.ones_like(logits1[..., :1]), affine)
    diff = tf.square(tf.sigmoid(logits2) - moved) * valid
    return tf.reduce_mean(tf.reduce_sum(diff, axis=[1, 2]))


register_preset("dense_unet", "dense_unet", {}, "SAT (III) stacked dense U-Nets, CAB, deformable conv, coherent loss")
register_preset("dense_unet_baseline", "dense_unet", {"inside": "none", "coherent_weight": 0.0,
                                                      "block": "resnet", "topology": "hourglass"},
                "Hourglass2-Resnet baseline of Table 1")
register_preset("dense_unet_lite", "dense_unet", {"channels": 32},
                "Dense U-Net at an eighth of the paper's width, 32 channels not 256 (CPU training)")
# The recipe of the shipped weights (tfalign/weights/dense_unet_w64): a quarter of the paper's width, single images
# (no coherent loss: it doubles every step) and the CPU budget's 30 x 50 steps of batch 8, the paper's decay points.
register_preset("dense_unet_w64", "dense_unet",
                {"channels": 64, "coherent_weight": 0.0, "input.pair": False, "train.batch_size": 8,
                 "train.epochs": 30, "train.learning_rate": 1e-3, "train.milestones": (16, 24)},
                "Dense U-Net at a quarter of the paper's width (64 channels), no coherent loss; trained weights ship")
