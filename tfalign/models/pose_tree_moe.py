"""Pose-Tree-MoE: cascaded shape-indexed regression with tree-gated experts and head-pose gating.

Paper: ../shared/papers/pose_tree_moe.txt (Arnaud, Dapogny, Bailly, 2019), §3 and §3.5.

* Head pose (§3.1): yaw, pitch and roll by three separate regressors on a shared backbone (a light CNN here by
  default instead of a ResNet-50; any registered backbone by config).
* Representation layer (§3.2): 32×32 patches centred on each current landmark of the 150×150 grayscale face, cut
  with the shared bilinear sampler (``PointPatches``, builtin TFLite ops); L = 8 expert CNNs
  (7@5×5 → 14@5×5 → 28@3×3 → 56@3×3 → 30@1×1, strided) with kernels shared across patches; combined by a
  depth-3 neural tree gate on the head pose (eq. 4, 9–11).
* Regression layer (§3.3): L′ = 64 expert FC regressors (one hidden layer of 128) on the features, combined by a
  depth-6 neural tree gate on the features themselves (eq. 5–7).
* Cascade (§3.5): 4 stages from the mean shape, end-to-end, L2 loss; in training the initial shape is jittered
  (translation N(0, 10 px), scale N(1, 0.1)); flips come from the data pipeline.

The L experts of a layer share their input, so they are computed together: the first expert convolution is one
convolution with L×7 filters, the next ones grouped convolutions (``GroupConv2D``: TFLite CONV_2D, CoreML
``groups``); the 64 expert hidden layers are one Dense of 64×128 units and the output layers one batched matmul.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tfalign._keras import keras, layers, register, tf
from tfalign.layers import GroupConv2D, PointPatches
from tfalign.losses import masked_point_loss
from tfalign.models.base import Architecture, InputSpec, TrainSpec, register_architecture, register_preset
from tfalign.schemes import get_scheme

GATES = ("average", "softmax", "tree")


@dataclasses.dataclass(frozen=True)
class PoseTreeMoEConfig:
    """Paper defaults (§3.5). Table 1's variants are combinations of the two layer kinds.

    Attributes:
        num_stages: cascade stages (4).
        patch_size: side of the shape-indexed patches in input pixels (32).
        representation_experts: L, expert CNNs of the representation layer (8; 1 = single CNN baseline).
        representation_gate: average | softmax | tree, gated on the head pose.
        expert_filters: filters of each expert CNN (7, 14, 28, 56, 30); with L = 1 the paper uses
            (20, 40, 80, 160, 30).
        regression_experts: L′, expert FC regressors (64; 1 = the single large FC baseline).
        regression_hidden: hidden units of each expert regressor (128; the baseline uses 8192).
        regression_gate: average | softmax | tree, gated on the features.
        pose_backbone: "lite" (a small CNN) or a name registered in ``tfalign.models.backbones``.
        pose_weight: weight of the head-pose L2 loss (radians²) next to the landmark L2 loss.
        init_translation_px, init_scale_std: initial-shape augmentation (N(0, 10) px, N(1, 0.1)).
        top_k: 0 = every regression expert; k > 0 = only the k experts with the largest gate values
            (exact leaf probabilities of the tree, renormalised), computed by gathering their weights.
    """
    num_stages: int = 4
    patch_size: int = 32
    representation_experts: int = 8
    representation_gate: str = "tree"
    expert_filters: tuple = (7, 14, 28, 56, 30)
    regression_experts: int = 64
    regression_hidden: int = 128
    regression_gate: str = "tree"
    pose_backbone: str = "lite"
    pose_weight: float = 1.0
    init_translation_px: float = 10.0
    init_scale_std: float = 0.1
    top_k: int = 0
    input: InputSpec = InputSpec(height=150, width=150, channels=1, mean=127.5, std=127.5, crop_scale=1.25,
                                 schemes=("300w_68",), extras=("pose",))
    train: TrainSpec = TrainSpec(batch_size=16, epochs=60, optimizer="adam", learning_rate=1e-3,
                                 schedule="step", milestones=(40, 55), decay=0.1)

    def __post_init__(self):
        for name in ("representation_gate", "regression_gate"):
            if getattr(self, name) not in GATES:
                raise ValueError(f"{name} must be one of {GATES}, got '{getattr(self, name)}'")
        for name in ("representation_experts", "regression_experts"):
            n = getattr(self, name)
            if n < 1:
                raise ValueError(f"{name} must be >= 1, got {n}")
        for name, n in (("representation", self.representation_experts), ("regression", self.regression_experts)):
            if getattr(self, f"{name}_gate") == "tree" and n & (n - 1):
                raise ValueError(f"a tree gate needs a power-of-two number of experts, got {name}_experts={n}")
        if len(self.expert_filters) != 5:
            raise ValueError(f"expert_filters must list 5 layers, got {self.expert_filters}")
        if not 0 <= self.top_k <= self.regression_experts:
            raise ValueError(f"top_k must be 0..{self.regression_experts}, got {self.top_k}")
        if self.num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {self.num_stages}")


def tree_leaf_probabilities(decisions, depth: int):
    """Leaf probabilities µ of a complete binary neural tree (eq. 10) from its node decisions.

    ``decisions`` [B, 2^depth - 1]: d_n, the probability of going *left* at node n, nodes in breadth-first order
    (root 0, children of n are 2n+1 and 2n+2). Leaf l's path reads the bits of l from the most significant one,
    0 = left. Returns [B, 2^depth], summing to 1.
    """
    probs = tf.ones_like(decisions[:, :1])
    for level in range(depth):
        start = 2 ** level - 1
        d = decisions[:, start:start + 2 ** level]
        probs = tf.reshape(tf.stack([probs * d, probs * (1.0 - d)], axis=-1), [-1, 2 ** (level + 1)])
    return probs


@register("MoEGate")
class MoEGate(keras.layers.Layer):
    """Gate g(x) ∈ [0, 1]^L, Σ g = 1: ``average`` (1/L), ``softmax`` (eq. 8) or ``tree`` (eq. 9–11)."""

    def __init__(self, num_experts: int, kind: str = "tree", **kwargs):
        super().__init__(**kwargs)
        if kind not in GATES:
            raise ValueError(f"gate kind must be one of {GATES}, got '{kind}'")
        self.num_experts, self.kind = int(num_experts), kind
        self.depth = int(np.log2(num_experts)) if kind == "tree" else 0
        if kind == "tree" and 2 ** self.depth != num_experts:
            raise ValueError(f"a tree gate needs a power-of-two number of experts, got {num_experts}")
        units = {"softmax": num_experts, "tree": num_experts - 1}.get(kind)
        self.dense = layers.Dense(units, name="nodes") if units else None

    def call(self, x):
        if self.kind == "average" or self.num_experts == 1:
            return tf.ones_like(x[:, :1]) * tf.ones([1, self.num_experts]) / float(self.num_experts)
        logits = self.dense(x)
        if self.kind == "softmax":
            return tf.nn.softmax(logits, axis=-1)
        return tree_leaf_probabilities(tf.sigmoid(logits), self.depth)

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "kind": self.kind}

    def get_prunable_weights(self):  # magnitude pruning (tfmot's protocol for custom layers)
        return [self.dense.kernel] if self.dense is not None else []


@register("ExpertCNNs")
class ExpertCNNs(keras.layers.Layer):
    """L expert CNNs applied to every patch with kernels shared across patches.

    Input [B, P, S, S, C] patches → [B, P, L, n]. Five strided convolutions per expert; all experts in one conv stack
    (the first conv has L×f1 filters, the rest are grouped by expert).
    """

    def __init__(self, num_experts: int, filters=(7, 14, 28, 56, 30), **kwargs):
        super().__init__(**kwargs)
        self.num_experts, self.filters = int(num_experts), tuple(int(f) for f in filters)
        kernels = (5, 5, 3, 3, 1)
        self.convs = []
        for i, (f, k) in enumerate(zip(self.filters, kernels)):
            total = f * self.num_experts
            if i == 0 or self.num_experts == 1:
                conv = layers.Conv2D(total, k, strides=2, padding="same", name=f"conv{i}")
            else:
                conv = GroupConv2D(total, k, groups=self.num_experts, strides=2, name=f"conv{i}")
            self.convs.append(conv)

    def build(self, input_shape):
        # The convolutions' kernels exist before the first call, so a pruning wrapper can list them.
        h, w, c = (int(d) for d in input_shape[2:])
        for conv, f in zip(self.convs, self.filters):
            conv.build((None, h, w, c))
            h, w, c = -(-h // 2), -(-w // 2), f * self.num_experts  # stride 2, "same"
        super().build(input_shape)

    def call(self, patches):
        num_points = patches.shape[1]
        x = tf.reshape(patches, [-1, patches.shape[2], patches.shape[3], patches.shape[4]])
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = tf.nn.relu(x)
        # Global average over what is left of the patch (1×1 for 32×32 patches) → n features per expert.
        x = tf.reduce_mean(x, axis=[1, 2])
        return tf.reshape(x, [-1, num_points, self.num_experts, self.filters[-1]])

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "filters": self.filters}

    def get_prunable_weights(self):  # magnitude pruning (tfmot's protocol for custom layers): every kernel
        return [conv.kernel for conv in self.convs]

    # Channel pruning inside the layer (quantization.channel_pruning's internal-channel protocol): the expert
    # stacks hold most of the model's MACs, but their feature maps never leave the layer, so the graph-level
    # pruner cannot see them. Each expert keeps its own filters; the output features (filters[-1]) stay.
    def internal_channel_scores(self) -> list:
        """Per internal feature map: L1 norm of every filter, [experts, filters per expert]."""
        e = self.num_experts
        return [np.abs(np.asarray(conv.kernel)).reshape(-1, e, f).sum(axis=0)
                for conv, f in zip(self.convs[:-1], self.filters[:-1])]

    def internal_pruned(self, keep: list) -> tuple:
        """(config, weights) of the copy keeping filters ``keep[i][expert]`` of internal map i."""
        e = self.num_experts
        flat = [np.concatenate([g * f + np.asarray(k[g]) for g in range(e)])
                for k, f in zip(keep, self.filters[:-1])]
        weights = []
        for i, conv in enumerate(self.convs):
            kernel, bias = np.asarray(conv.kernel), np.asarray(conv.bias)
            if i < len(flat):
                kernel, bias = kernel[..., flat[i]], bias[flat[i]]
            if i > 0:
                prev = keep[i - 1]
                if isinstance(conv, GroupConv2D):  # each expert's kernel reads its own kept inputs
                    f = kernel.shape[-1] // e
                    kernel = np.concatenate([kernel[:, :, np.asarray(prev[g])][..., g * f:(g + 1) * f]
                                             for g in range(e)], axis=-1)
                else:  # one expert: a plain convolution
                    kernel = kernel[:, :, flat[i - 1]]
            weights += [kernel, bias]
        filters = tuple(len(k[0]) for k in keep) + self.filters[len(keep):]
        return {**self.get_config(), "filters": filters}, weights


@register("ExpertRegressors")
class ExpertRegressors(keras.layers.Layer):
    """L′ expert FC regressors δs_l = W1_l·relu(W0_l·h + b0_l) + b1_l (eq. 6) mixed by gate g′ (eq. 7).

    Inputs ``[h [B, D], gate [B, L′]]`` → δs [B, out]. With ``top_k`` > 0 only the k experts with the largest
    gate values run: their weights are gathered and the gate renormalised over them.
    """

    def __init__(self, num_experts: int, hidden: int, outputs: int, top_k: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_experts, self.hidden, self.outputs, self.top_k = int(num_experts), int(hidden), int(outputs), \
            int(top_k)

    def build(self, input_shape):
        dim = int(input_shape[0][-1])
        e, h = self.num_experts, self.hidden
        self.w0 = self.add_weight("w0", (dim, e * h), initializer="he_normal")
        self.b0 = self.add_weight("b0", (e * h,), initializer="zeros")
        # Small output weights: the cascade starts from the mean shape and each stage learns a correction.
        self.w1 = self.add_weight("w1", (e, h, self.outputs),
                                  initializer=keras.initializers.RandomNormal(stddev=1e-3))
        self.b1 = self.add_weight("b1", (e, self.outputs), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        feats, gate = inputs
        e, h = self.num_experts, self.hidden
        if self.top_k and self.top_k < e:
            values, idx = tf.math.top_k(gate, k=self.top_k)  # [B, k]
            values = values / tf.reduce_sum(values, axis=-1, keepdims=True)
            w0 = tf.gather(tf.transpose(tf.reshape(self.w0, [-1, e, h]), [1, 0, 2]), idx)  # [B, k, D, h]
            b0 = tf.gather(tf.reshape(self.b0, [e, h]), idx)  # [B, k, h]
            hid = tf.nn.relu(tf.einsum("bd,bkdh->bkh", feats, w0) + b0)
            out = tf.einsum("bkh,bkho->bko", hid, tf.gather(self.w1, idx)) + tf.gather(self.b1, idx)
            return tf.einsum("bko,bk->bo", out, values)
        hid = tf.nn.relu(tf.matmul(feats, self.w0) + self.b0)  # all experts' hidden layers at once
        hid = tf.transpose(tf.reshape(hid, [-1, e, h]), [1, 0, 2])  # [E, B, h]
        out = tf.matmul(hid, self.w1) + self.b1[:, None, :]  # [E, B, out]
        return tf.einsum("ebo,be->bo", out, gate)

    def get_config(self):
        return {**super().get_config(), "num_experts": self.num_experts, "hidden": self.hidden,
                "outputs": self.outputs, "top_k": self.top_k}

    def get_prunable_weights(self):  # magnitude pruning (tfmot's protocol for custom layers)
        return [self.w0, self.w1]

    # Channel pruning of each expert's hidden layer (see ExpertCNNs.internal_channel_scores).
    def internal_channel_scores(self) -> list:
        e, h = self.num_experts, self.hidden
        return [np.abs(np.asarray(self.w0)).reshape(-1, e, h).sum(axis=0)]

    def internal_pruned(self, keep: list) -> tuple:
        e, h = self.num_experts, self.hidden
        k = np.stack([np.asarray(kept) for kept in keep[0]])  # [E, k]
        cols = (np.arange(e)[:, None] * h + k).reshape(-1)
        w1 = np.stack([np.asarray(self.w1)[g, k[g]] for g in range(e)])
        weights = [np.asarray(self.w0)[:, cols], np.asarray(self.b0)[cols], w1, np.asarray(self.b1)]
        return {**self.get_config(), "hidden": int(k.shape[1])}, weights


@register("InitialShape")
class InitialShape(keras.layers.Layer):
    """The cascade's start s(0): the mean shape, jittered in training (§3.5) by a random translation N(0, t px)
    and scale N(1, σ) about its centre, per sample."""

    def __init__(self, mean_shape, translation: float = 0.0, scale_std: float = 0.0, image_size: int = 150,
                 **kwargs):
        super().__init__(**kwargs)
        self.mean_shape = np.asarray(mean_shape, np.float32).tolist()
        self.translation, self.scale_std, self.image_size = float(translation), float(scale_std), int(image_size)

    def call(self, image, training=None):
        batch = tf.shape(image)[0]
        shape = tf.tile(tf.constant(self.mean_shape, tf.float32)[None], [batch, 1, 1])
        if not training:
            return shape
        centre = tf.reduce_mean(shape, axis=1, keepdims=True)
        scale = tf.random.normal([batch, 1, 1], 1.0, self.scale_std)
        shift = tf.random.normal([batch, 1, 2], 0.0, self.translation / self.image_size)
        return (shape - centre) * scale + centre + shift

    def get_config(self):
        return {**super().get_config(), "mean_shape": self.mean_shape, "translation": self.translation,
                "scale_std": self.scale_std, "image_size": self.image_size}


@register("MixExperts")
class MixExperts(keras.layers.Layer):
    """h = H·g (eq. 4): per landmark, the gate-weighted sum of the L experts' features."""

    def call(self, inputs):
        per_expert, gate = inputs  # [B, P, L, n], [B, L]
        return tf.reduce_sum(per_expert * gate[:, None, :, None], axis=2)


def mean_shape(scheme: str = "300w_68", crop_scale: float = 1.25) -> np.ndarray:
    """Frontal mean shape in normalised crop coordinates, from the 3D template (no data needed)."""
    from tfalign.data.face3d import MEAN_FACE_68
    from tfalign.schemes import convert
    pts = convert(MEAN_FACE_68[:, :2], "300w_68", scheme) if scheme != "300w_68" else MEAN_FACE_68[:, :2]
    lo, hi = pts.min(0), pts.max(0)
    side = crop_scale * float(np.max(hi - lo))
    return ((pts - (lo + hi) / 2) / side + 0.5).astype(np.float32)


def _pose_head(image, config):
    """Shared pose features + three separate regressors (eq. 1) → [B, 3] radians.

    The order is (pitch, yaw, roll), the data pipeline's ``pose`` label, so each regressor learns its own angle.
    """
    if config.pose_backbone == "lite":
        x = image
        for i, f in enumerate((16, 32, 64, 128)):
            x = layers.Conv2D(f, 3, strides=2, padding="same", use_bias=False, name=f"pose_conv{i}")(x)
            x = layers.BatchNormalization(name=f"pose_bn{i}")(x)
            x = layers.ReLU(name=f"pose_relu{i}")(x)
        feats = layers.GlobalAveragePooling2D(name="pose_pool")(x)
    else:
        from tfalign.models.backbones import build_backbone
        rgb = layers.Concatenate(name="pose_rgb")([image] * 3) if image.shape[-1] == 1 else image
        feats = layers.GlobalAveragePooling2D(name="pose_pool")(build_backbone(config.pose_backbone, rgb))
    angles = []
    for name in ("pitch", "yaw", "roll"):
        h = layers.Dense(64, activation="relu", name=f"pose_{name}_hidden")(feats)
        angles.append(layers.Dense(1, name=f"pose_{name}")(h))
    return layers.Concatenate(name="pose")(angles)


@register_architecture
class PoseTreeMoE(Architecture):
    name = "pose_tree_moe"
    config_class = PoseTreeMoEConfig

    def build(self, config: PoseTreeMoEConfig):
        spec = config.input
        n = get_scheme(spec.schemes[0]).num_points
        image = keras.Input((spec.height, spec.width, spec.channels), name="image")
        pose = _pose_head(image, config)
        shape = InitialShape(mean_shape(spec.schemes[0], spec.crop_scale), config.init_translation_px,
                             config.init_scale_std, spec.width, name="initial_shape")(image)
        outputs = {"pose": pose}
        # Patches are cut from the image in input pixels: spacing is 1 input pixel per patch pixel.
        for stage in range(1, config.num_stages + 1):
            patches = PointPatches(config.patch_size, name=f"s{stage}_patches")([image, shape])
            per_expert = ExpertCNNs(config.representation_experts, config.expert_filters,
                                    name=f"s{stage}_experts")(patches)  # [B, P, L, n]
            g = MoEGate(config.representation_experts, config.representation_gate, name=f"s{stage}_pose_gate")(pose)
            h = MixExperts(name=f"s{stage}_mix")([per_expert, g])
            h = layers.Flatten(name=f"s{stage}_features")(h)  # [B, P·n]
            g2 = MoEGate(config.regression_experts, config.regression_gate, name=f"s{stage}_feature_gate")(h)
            delta = ExpertRegressors(config.regression_experts, config.regression_hidden, 2 * n, config.top_k,
                                     name=f"s{stage}_regressors")([h, g2])
            delta = layers.Reshape((n, 2), name=f"s{stage}_delta")(delta)
            shape = layers.Add(name=f"s{stage}_shape")([shape, delta])
            outputs[f"landmarks_stage{stage}"] = shape
        outputs["landmarks"] = shape
        return keras.Model(image, outputs, name="pose_tree_moe")

    def loss(self, config: PoseTreeMoEConfig, outputs, batch):
        """L2 on every stage's shape (the cascade is trained end to end) + the head-pose L2 where labelled."""
        parts = {}
        total = 0.0
        for stage in range(1, config.num_stages + 1):
            parts[f"stage{stage}"] = masked_point_loss(outputs[f"landmarks_stage{stage}"], batch["points"],
                                                       batch["mask"], "l2")
            total += parts[f"stage{stage}"]
        if "pose" in batch:
            pose_mask = tf.cast(batch.get("pose_mask", tf.ones_like(batch["pose"][:, 0])), tf.float32)
            err = tf.reduce_sum(tf.square(outputs["pose"] - batch["pose"]), -1)
            parts["pose"] = tf.math.divide_no_nan(tf.reduce_sum(err * pose_mask), tf.reduce_sum(pose_mask))
            total += config.pose_weight * parts["pose"]
        return total, parts


VARIANTS = {  # Table 1 of the paper: the regression-layer variants share a single representation CNN.
    "pose_tree_moe_baseline": ({"representation_experts": 1, "expert_filters": (20, 40, 80, 160, 30),
                                "regression_experts": 1, "regression_hidden": 8192, "regression_gate": "average"},
                               "single large FC regressor (Table 1 baseline)"),
    "pose_tree_moe_moe": ({"representation_experts": 1, "expert_filters": (20, 40, 80, 160, 30),
                           "regression_gate": "average"}, "64 expert regressors, plain average"),
    "pose_tree_moe_softmax": ({"representation_experts": 1, "expert_filters": (20, 40, 80, 160, 30),
                               "regression_gate": "softmax"}, "64 expert regressors, softmax gate"),
    "pose_tree_moe_tree": ({"representation_experts": 1, "expert_filters": (20, 40, 80, 160, 30)},
                           "64 expert regressors, depth-6 tree gate (Tree-MoE)"),
    "pose_tree_moe": ({}, "Pose-Tree-MoE: 8 pose-tree-gated expert CNNs + Tree-MoE regression (paper)"),
    "pose_tree_moe_lite": ({"num_stages": 2, "regression_experts": 16, "regression_hidden": 32},
                           "Pose-Tree-MoE with 2 stages and 16 small regressors: trainable on a laptop CPU"),
}
for _name, (_overrides, _doc) in VARIANTS.items():
    register_preset(_name, "pose_tree_moe", _overrides, _doc)
