"""Two-stage mobile face alignment: inverted residuals + RoIAlign refinement (ModiFace, CVPRW 2019).

Paper: ../shared/papers/mobile_roialign_two_stage.txt, §3 and Tables 1–3. tfalign's smallest and fastest model,
and the package default (``python -m tfalign.export`` without ``--model``).

* **Stage 1** (§3.1): MobileNetV2 inverted residual blocks → one small H × H heatmap per landmark (sigmoid) →
  expectation over the heatmap normalised by its sum (eq. 1, :class:`tfalign.layers.SoftArgmax` with
  ``normalize="sum"``) → coarse coordinates.
* **Stage 2**: shared convolutional features branch off stage 1 (stride-4 features plus upsampled stride-8
  context); RoIAlign (:class:`tfalign.layers.PointPatches`, bilinear sampling via GATHER: builtin TFLite ops) takes
  an S × S crop around each coarse landmark; the predict block is one grouped convolution with a separate kernel
  per landmark (:class:`tfalign.layers.GroupConv2D`, groups = landmarks); its sigmoid heatmap's expectation is the
  offset from the coarse estimate ("a perfectly centred heatmap applies no refinement").
* **Loss** (§3.3): pixel-wise sigmoid cross-entropy weighted by the distance weight of eq. (3) on both stages'
  heatmaps (Gaussian targets, §3.2) + λ·L2 on the coordinates. Table 1's ablations are config switches:
  ``heatmap_loss=False`` (L2 only), ``l2_loss=False`` (heatmap loss only), ``stage2=False`` (one stage).

Full int8 (what we measured, tests/test_mobile_two_stage.py and bench/mobile_two_stage.py): the head is a sigmoid
map normalised by its sum, not a spatial softmax, because an int8 softmax has the fixed output scale 1/256 and
zeroes large maps (../shared/STACK.md); sigmoid cells quantise independently and the 16 × 16 / 8 × 8 maps are small.
Everything convolutional is int8. Three small layers stay float through the exporter's ``keep_float_in_int8``
switch: the two expectations (:class:`SumSoftArgmax`: an int8 DIV by an all-zero map aborts the interpreter),
the RoIAlign sampling (:class:`RoIAlign`: int8 bilinear sampling cost 1.0 point of NME, float costs 0.01) and the
final offset (:class:`RefineOffset`: coordinates not snapped to a 1/255 grid). Net: int8 NME = float NME ± 0.02,
int8 faster than float on LiteRT/XNNPACK.

Choices the paper leaves open, and what we chose:
input 128 × 128 RGB; MobileNetV2 widths 16-24-32-64 with expansion 4 (158k params in Table 3; ours 144k);
heatmap 16 × 16 (stride 8); RoI 8 × 8 samples covering 0.15 of the crop side; Gaussian σ = 1 heatmap cell;
prior-initialised heatmap biases; L_h averaged (not summed) over landmarks, which only rescales λ; the L2 term
applies to the coarse and the final coordinates; RoI positions do not back-propagate (as in Mask R-CNN).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from tfalign._keras import keras, layers, register, tf
from tfalign.data import targets
from tfalign.layers import GROUP_IMPLS, GroupConv2D, PointPatches, SoftArgmax, normalized_to_pixel
from tfalign.losses import masked_point_loss
from tfalign.models.base import (CONFIG_FILE, WEIGHTS_FILE, Architecture, InputSpec, TrainSpec, load_weights_folder,
                                 register_architecture, register_preset, save_weights_folder)

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights",
                           "mobile_two_stage")
HEATMAP_WEIGHTS = ("distance", "uniform")


@dataclasses.dataclass(frozen=True)
class MobileTwoStageConfig:
    """Paper defaults (§3) where the paper gives them; tfalign's choices where it does not (see module doc).

    Attributes:
        alpha: width multiplier (Table 2: 1.0 and 0.5); channel counts are rounded to multiples of 8 (min 8).
        blocks: inverted residual stages ``(channels, repeats, stride, expansion)`` after the stride-2 stem.
        stem_channels: channels of the 3 × 3 stride-2 stem convolution (before α).
        heatmap_size: H of the stage-1 H × H heatmaps; input size / H must be the stride of one block stage.
        stage2: False = the "without second stage" ablation (Table 1).
        stage2_stride: stride of the stage-1 features the shared stage-2 convolutions branch from.
        stage2_channels: channels of the shared stage-2 features that RoIAlign crops (before α).
        roi_size: S, samples per side of each RoI crop (and of the refinement heatmap).
        roi_side: side of each RoI in normalised crop units (0.15 = 19 px of a 128-px crop).
        predict_kernel: kernel of the per-landmark grouped predict convolution.
        sigma: standard deviation of the Gaussian heatmap targets, in heatmap cells (§3.2).
        heatmap_prior: initial value of every heatmap cell (bias init of the sigmoid heads).
        heatmap_loss: use L_h (eq. 2); False = "without heatmap loss" (Table 1).
        l2_loss: use λ·L2 on the coordinates; False = "without L2 loss" (Table 1).
        l2_weight: λ (L2 of normalised coordinates, so λ is large).
        heatmap_weight: ``distance`` = eq. (3); ``uniform`` = plain pixel-wise sigmoid cross-entropy.
        group_impl: GroupConv2D implementation: ``depthwise`` (DEPTHWISE_CONV_2D + SUM, the fastest in LiteRT),
            ``native`` (one grouped CONV_2D) or ``split``; all three hold the same weights.
    """
    alpha: float = 1.0
    stem_channels: int = 16
    blocks: tuple = ((16, 1, 1, 1), (24, 2, 2, 4), (32, 2, 2, 4), (64, 3, 2, 4))
    heatmap_size: int = 16
    stage2: bool = True
    stage2_stride: int = 4
    stage2_channels: int = 16
    roi_size: int = 8
    roi_side: float = 0.15
    predict_kernel: int = 3
    sigma: float = 1.0
    heatmap_prior: float = 0.01
    heatmap_loss: bool = True
    l2_loss: bool = True
    l2_weight: float = 100.0
    heatmap_weight: str = "distance"
    group_impl: str = "depthwise"
    input: InputSpec = dataclasses.field(default_factory=lambda: InputSpec(height=128, width=128, channels=3))
    train: TrainSpec = dataclasses.field(default_factory=lambda: TrainSpec(
        batch_size=32, epochs=220, optimizer="adam", learning_rate=2e-3, schedule="cosine"))

    def __post_init__(self):
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if not self.blocks:
            raise ValueError("blocks must list at least one inverted residual stage")
        for b in self.blocks:
            if len(b) != 4 or min(b) <= 0:
                raise ValueError(f"each block must be (channels, repeats, stride, expansion) > 0, got {tuple(b)}")
        if self.heatmap_weight not in HEATMAP_WEIGHTS:
            raise ValueError(f"heatmap_weight must be one of {HEATMAP_WEIGHTS}, got '{self.heatmap_weight}'")
        if not (self.heatmap_loss or self.l2_loss):
            raise ValueError("heatmap_loss and l2_loss cannot both be False: nothing would be trained")
        if not 0.0 < self.heatmap_prior < 1.0:
            raise ValueError(f"heatmap_prior must be in (0, 1), got {self.heatmap_prior}")
        if self.roi_size <= 0 or self.roi_side <= 0 or self.sigma <= 0 or self.l2_weight < 0:
            raise ValueError("roi_size, roi_side and sigma must be > 0 and l2_weight >= 0")
        if self.group_impl not in GROUP_IMPLS:
            raise ValueError(f"group_impl must be one of {'|'.join(GROUP_IMPLS)}, got '{self.group_impl}'")
        if self.input.height != self.input.width:
            raise ValueError(f"input must be square (H × H heatmaps), got {self.input.height}x{self.input.width}")
        strides = self.feature_strides()
        if self.input.height % self.heatmap_size or self.input.height // self.heatmap_size not in strides:
            raise ValueError(f"heatmap_size {self.heatmap_size}: input {self.input.height} / heatmap_size must be "
                             f"one of the feature strides {sorted(strides)}")
        if self.stage2 and self.stage2_stride not in strides:
            raise ValueError(f"stage2_stride {self.stage2_stride} must be one of the feature strides "
                             f"{sorted(strides)}")

    def feature_strides(self) -> set:
        stride, out = 2, {2}
        for _, _, s, _ in self.blocks:
            stride *= s
            out.add(stride)
        if self.input.height % stride:
            raise ValueError(f"input size {self.input.height} is not divisible by the total stride {stride}")
        return out

    def width(self, channels: int) -> int:
        return _round_channels(channels * self.alpha)


def _round_channels(c: float, divisor: int = 8) -> int:
    # MobileNetV2's rounding: multiples of 8 (vector-friendly), never below 90 % of the requested width.
    out = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * c else out


# ---------------------------------------------------------------------------------------------------------------
# Layers. Named Layer subclasses instead of Lambdas / raw tf ops, so tfmot can clone and annotate the model.


@register("StopGradient")
class StopGradient(keras.layers.Layer):
    """Identity whose gradient is zero: RoI positions are sampling locations, not something to train (Mask R-CNN)."""

    def call(self, x):
        return tf.stop_gradient(x)


@register("PatchesToGroups")
class PatchesToGroups(keras.layers.Layer):
    """[B, P, S, S, C] RoI crops → [B, S, S, P·C]: landmark-major channels, the layout a grouped conv needs."""

    def call(self, patches):
        p, s, c = patches.shape[1], patches.shape[2], patches.shape[4]
        x = tf.transpose(patches, [0, 2, 3, 1, 4])
        return tf.reshape(x, [-1, s, s, p * c])


@register("SumSoftArgmax")
class SumSoftArgmax(SoftArgmax):
    """:class:`tfalign.layers.SoftArgmax` over sigmoid maps normalised by their sum (eq. 1), kept float in int8.

    Why float: in a fully int8 graph the divisor Σp is an int8 tensor, and a face whose map quantises to all
    zeros makes TFLite's int8 DIV abort (``div.cc: data[i] != zero_point``) instead of returning a point; an
    8-bit coordinate is also a 1/255 grid (0.5 px at 128 px). Dequantising the small map and doing the
    expectation in float costs a few µs. ``keep_float_in_int8`` is the exporter's per-layer switch.
    """

    keep_float_in_int8 = True

    def __init__(self, **kwargs):
        kwargs.setdefault("normalize", "sum")
        super().__init__(**kwargs)


@register("RoIAlign")
class RoIAlign(PointPatches):
    """:class:`tfalign.layers.PointPatches` (RoIAlign around each coarse landmark), kept float in int8 exports.

    Why float: with the bilinear sampling quantised (int8 GATHER, then int8 MUL by the corner weights and int8
    ADDs) the trained model lost 1.0 point of validation NME (5.95 % vs 4.90 % float); with only this layer float
    the int8 model is within 0.01 point of Keras, and no slower (the gathers move 68·S² C-vectors).
    """

    keep_float_in_int8 = True


@register("RefineOffset")
class RefineOffset(keras.layers.Layer):
    """final = coarse + (u − ½) · roi_side, ``u`` the expectation of the refinement heatmap in RoI units.

    A heatmap centred on its RoI (u = ½) leaves the coarse estimate unchanged (§3.1). Kept float in int8
    exports, like its inputs, so the output coordinates are not snapped to an 8-bit grid.
    """

    keep_float_in_int8 = True

    def __init__(self, roi_side: float, **kwargs):
        super().__init__(**kwargs)
        self.roi_side = float(roi_side)

    def call(self, inputs):
        coarse, u = inputs
        return coarse + (u - 0.5) * self.roi_side

    def get_config(self):
        return {**super().get_config(), "roi_side": self.roi_side}


def _conv_bn(x, filters, kernel, stride, name, act=True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if act else x


def inverted_residual(x, filters, stride, expansion, name):
    """MobileNetV2 block: 1×1 expand + ReLU6 → 3×3 depthwise + ReLU6 → linear 1×1 projection, residual if shapes match."""
    cin = int(x.shape[-1])
    h = x
    if expansion != 1:
        h = _conv_bn(h, cin * expansion, 1, 1, f"{name}_expand")
    h = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(h)
    h = layers.BatchNormalization(name=f"{name}_dw_bn")(h)
    h = layers.ReLU(6.0, name=f"{name}_dw_relu")(h)
    h = _conv_bn(h, filters, 1, 1, f"{name}_project", act=False)
    if stride == 1 and cin == filters:
        h = layers.Add(name=f"{name}_add")([x, h])
    return h


def build_model(config: MobileTwoStageConfig, name: str = "mobile_two_stage"):
    """The functional two-stage model: image → {landmarks, coarse, heatmap1[, heatmap2]}."""
    spec = config.input
    n = spec.num_points
    size = spec.height
    inputs = keras.Input((spec.height, spec.width, spec.channels), name="image")

    # Stage 1 backbone; keep the last feature map of each stride for the heads.
    x = _conv_bn(inputs, config.width(config.stem_channels), 3, 2, "stem")
    features, stride = {2: x}, 2
    for si, (channels, repeats, block_stride, expansion) in enumerate(config.blocks):
        for r in range(repeats):
            s = block_stride if r == 0 else 1
            x = inverted_residual(x, config.width(channels), s, expansion, f"block{si}_{r}")
        stride *= block_stride
        features[stride] = x
    deepest = stride

    # Heatmap head: deepest features upsampled to H and fused with the backbone features of that resolution,
    # so a small map still sees the whole face (the deepest features) and keeps position detail.
    hm_stride = size // config.heatmap_size
    head = features[deepest]
    if hm_stride != deepest:
        head = layers.UpSampling2D(deepest // hm_stride, interpolation="bilinear", name="hm1_up")(head)
        head = layers.Concatenate(name="hm1_concat")([head, features[hm_stride]])
    head = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="hm1_dw")(head)
    head = layers.BatchNormalization(name="hm1_dw_bn")(head)
    head = layers.ReLU(6.0, name="hm1_dw_relu")(head)
    # Prior init (as RetinaNet's): maps start near heatmap_prior everywhere instead of 0.5, so the sum-normalised
    # expectation is not pinned to the map centre by 250 background cells at the start of training.
    prior = float(np.log(config.heatmap_prior / (1.0 - config.heatmap_prior)))
    heatmap1 = layers.Conv2D(n, 1, activation="sigmoid", bias_initializer=keras.initializers.Constant(prior),
                             name="heatmap1")(head)
    coarse = SumSoftArgmax(name="coarse")(heatmap1)
    outputs = {"coarse": coarse, "heatmap1": heatmap1}

    if not config.stage2:
        outputs["landmarks"] = layers.Activation("linear", name="landmarks")(coarse)
        return keras.Model(inputs, _ordered(outputs), name=name)

    # Stage 2: shared convolutions branching off stage 1 at stage2_stride, with coarser context upsampled in.
    s2 = config.stage2_stride
    branch = features[s2]
    coarser = [k for k in sorted(features) if k > s2]
    if coarser:
        up = layers.UpSampling2D(coarser[0] // s2, interpolation="bilinear", name="s2_up")(features[coarser[0]])
        branch = layers.Concatenate(name="s2_concat")([branch, up])
    c2 = config.width(config.stage2_channels)
    branch = _conv_bn(branch, c2 * 2, 1, 1, "s2_reduce")
    branch = inverted_residual(branch, c2 * 2, 1, 2, "s2_block")
    shared = _conv_bn(branch, c2, 1, 1, "s2_shared")

    fmap = size // s2
    spacing = config.roi_side * fmap / config.roi_size  # feature-map pixels between RoI samples
    rois = StopGradient(name="roi_centres")(coarse)
    patches = RoIAlign(config.roi_size, spacing, name="roi_align")([shared, rois])  # [B, P, S, S, C]
    grouped = PatchesToGroups(name="roi_groups")(patches)  # [B, S, S, P*C]
    predict = GroupConv2D(n, config.predict_kernel, groups=n, impl=config.group_impl, name="predict")
    logits2 = predict(grouped)
    predict.bias.assign(tf.fill(predict.bias.shape, prior))  # same prior init (GroupConv2D has no initializer arg)
    heatmap2 = layers.Activation("sigmoid", name="heatmap2")(logits2)
    u = SumSoftArgmax(name="refine")(heatmap2)
    landmarks = RefineOffset(config.roi_side, name="landmarks")([coarse, u])
    outputs.update(heatmap2=heatmap2, landmarks=landmarks)
    return keras.Model(inputs, _ordered(outputs), name=name)


def _ordered(outputs: dict) -> dict:
    # 'landmarks' first: exporters and the base inference_model rely on it.
    return {k: outputs[k] for k in ("landmarks", "coarse", "heatmap1", "heatmap2") if k in outputs}


# ---------------------------------------------------------------------------------------------------------------
# Loss


def squared_distances(points, height: int, width: int):
    """Squared distance (in map cells) of every cell centre to each point: [B, N, 2] normalised → [B, H, W, N].

    The ``d²`` of eq. (3); the Gaussian targets themselves come from :mod:`tfalign.data.targets`.
    """
    px = normalized_to_pixel(points, height, width)
    dx = tf.range(width, dtype=px.dtype)[None, None, :, None] - px[:, None, None, :, 0]  # [B, 1, W, N]
    dy = tf.range(height, dtype=px.dtype)[None, :, None, None] - px[:, None, None, :, 1]  # [B, H, 1, N]
    return tf.square(dx) + tf.square(dy)


def heatmap_loss(pred, target, d2, mask, weighting: str = "distance"):
    """Pixel-wise sigmoid cross-entropy, eq. (2), weighted by eq. (3) ``w = 2·d² / (W² + H²)``.

    Summed over cells as in eq. (2), averaged over annotated landmarks and samples (eq. 2 also sums over the
    landmarks; averaging keeps the loss independent of N, which only rescales λ).
    ``pred`` are sigmoid probabilities [B, H, W, N]; ``mask`` [B, N].
    """
    h, w = int(pred.shape[1]), int(pred.shape[2])
    eps = 1e-6
    p = tf.clip_by_value(pred, eps, 1.0 - eps)
    ce = -(target * tf.math.log(p) + (1.0 - target) * tf.math.log(1.0 - p))
    if weighting == "distance":
        ce = ce * (2.0 * d2 / float(w * w + h * h))
    per_point = tf.reduce_sum(ce, axis=[1, 2])  # [B, N]
    mask = tf.cast(mask, per_point.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(per_point * mask), tf.reduce_sum(mask))


def two_stage_loss(config: MobileTwoStageConfig, outputs: dict, batch: dict):
    points = tf.cast(batch["points"], tf.float32)
    mask = tf.cast(batch["mask"], tf.float32)
    parts = {}
    if config.heatmap_loss:
        maps = [("heatmap1", points)]
        if config.stage2:
            # The ground truth in each RoI's own frame (normalised to the RoI; centre = the fixed coarse estimate).
            maps.append(("heatmap2", (points - tf.stop_gradient(outputs["coarse"])) / config.roi_side + 0.5))
        for key, pts in maps:
            pred = outputs[key]
            h, w = int(pred.shape[1]), int(pred.shape[2])
            target = targets.gaussian_heatmaps(pts, h, w, sigma=config.sigma)
            parts[key] = heatmap_loss(pred, target, squared_distances(pts, h, w), mask, config.heatmap_weight)
    if config.l2_loss:
        parts["l2"] = config.l2_weight * masked_point_loss(outputs["landmarks"], points, mask, kind="l2")
        if config.stage2:
            parts["l2_coarse"] = config.l2_weight * masked_point_loss(outputs["coarse"], points, mask, kind="l2")
    total = tf.add_n(list(parts.values()))
    return total, parts


@register_architecture
class MobileTwoStage(Architecture):
    name = "mobile_two_stage"
    config_class = MobileTwoStageConfig

    def build(self, config):
        return build_model(config)

    def loss(self, config, outputs, batch):
        return two_stage_loss(config, outputs, batch)


register_preset("mobile_two_stage", "mobile_two_stage", {"alpha": 1.0},
                "two-stage mobile model (inverted residuals + RoIAlign), α=1.0, 128 px: the package default")
register_preset("mobile_two_stage_a05", "mobile_two_stage", {"alpha": 0.5},
                "two-stage mobile model, half width (α=0.5)")


# ---------------------------------------------------------------------------------------------------------------
# Shipped weights



def save_pretrained(model, config: MobileTwoStageConfig, folder: str, dtype: str = "float16") -> str:
    """Write ``config.json`` + ``weights.npz`` atomically into ``folder`` (see ``base.save_weights_folder``)."""
    return save_weights_folder(model, config, folder, dtype)


def load_pretrained(folder: str = WEIGHTS_DIR):
    """The shipped trained model (no data needed): returns (keras.Model, MobileTwoStageConfig).

    ``folder`` holds ``config.json`` and ``weights.npz`` as written by :func:`save_pretrained`.
    """
    return load_weights_folder(MobileTwoStage(), folder, "mobile_two_stage")


__all__ = ["MobileTwoStageConfig", "MobileTwoStage", "build_model", "two_stage_loss", "squared_distances",
           "heatmap_loss", "inverted_residual", "load_pretrained", "save_pretrained", "WEIGHTS_DIR"]
