"""DeCaFA: Deep Convolutional Cascade for Face Alignment (Dapogny, Bailly, Cord, ICCV 2019).

Paper: ../shared/papers/decafa.txt, §3 and §3.5. S stages, each a full-resolution U-net (12 3×3 conv+BN+ReLU,
64→64→128→128→256→256 down and mirrored up, bilinear upsampling + 3×3 conv, no transposed convolutions) on a
128×128 grayscale face. K transfer layers (1×1 convolutions) per stage, in decreasing landmark count, chained
(T^{L1} from the U-net embedding, T^{Lk} from T^{L(k-1)}, Fig. 3a) or independent (all from the embedding,
Fig. 3b); a spatial softmax turns each into landmark-wise attention maps and a soft-argmax into coordinates.
The next stage's input is a fusion F1–F5 (eqs. 4–8) of the image I, the embedding H and the sum M of the
attention maps of markup k0. Loss (eq. 10): Σ_i λ_i Σ_k (1/L_k)·|ẑ − z*|₁, each sample supervising only the
markups it carries (per-sample mask), so 68-point and 5-point faces train one model.
"""
from __future__ import annotations

import dataclasses

from tfalign._keras import keras, layers, register, tf
from tfalign.layers import SoftArgmax, SpatialSoftmax
from tfalign.losses import scheme_slices
from tfalign.models.base import Architecture, InputSpec, TrainSpec, register_architecture, register_preset
from tfalign.schemes import get_scheme

FUSIONS = ("F1", "F2", "F3", "F4", "F5")
STAGE_WEIGHTS = {"increasing": (1 / 8, 1 / 4, 1 / 2, 1.0), "constant": (1.0, 1.0, 1.0, 1.0),
                 "decreasing": (1.0, 1 / 2, 1 / 4, 1 / 8)}


@dataclasses.dataclass(frozen=True)
class DeCaFAConfig:
    """Defaults of §3.5: 4 stages, F5 fusion, chained tasks, increasing λ, Adam 5e-4 with poly annealing 0.9.

    Attributes:
        num_stages: S, 1–4.
        channels: U-net widths of the three resolution levels (64, 128, 256 in the paper).
        fusion: F1 | F2 | F3 | F4 | F5 (eqs. 4–8).
        chained: chained transfer layers (Fig. 3a) or independent ones (Fig. 3b).
        stage_weights: "increasing" (1/8, 1/4, 1/2, 1), "constant" or "decreasing" λ_i of eq. 10.
        attention_markup: index k0 (into input.schemes) of the markup whose attention maps are fused.
        exit_stage: 0 exports all stages; s > 0 exports a model that runs only the first s stages (early exit).
        softmax_temperature: τ of the spatial softmax, exp(T/τ) in eq. 1. Any τ gives the same family of models
            (T/τ is a 1×1 conv with its weights scaled by 1/τ), but not the same training: a sharp attention map
            over 128×128 cells needs logit gaps of ~log(16384) ≈ 10, i.e. transfer weights of several units, which
            Adam at 5e-4 per step grows only over thousands of steps (the paper runs 400k). τ = 0.1 reaches them
            ten times sooner; 1.0 is eq. 1 as written.
    """
    num_stages: int = 4
    channels: tuple = (64, 128, 256)
    fusion: str = "F5"
    chained: bool = True
    stage_weights: str = "increasing"
    attention_markup: int = 0
    exit_stage: int = 0
    softmax_temperature: float = 1.0
    input: InputSpec = InputSpec(height=128, width=128, channels=1, mean=127.5, std=127.5, crop_scale=1.25,
                                 schemes=("300w_68", "mtfl_5"))
    train: TrainSpec = TrainSpec(batch_size=8, epochs=60, optimizer="adam", learning_rate=5e-4,
                                 schedule="poly", power=0.9)

    def __post_init__(self):
        if not 1 <= self.num_stages <= 4:
            raise ValueError(f"num_stages must be 1..4 (the paper's λ weights cover 4), got {self.num_stages}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got '{self.fusion}'")
        if self.stage_weights not in STAGE_WEIGHTS:
            raise ValueError(f"stage_weights must be one of {sorted(STAGE_WEIGHTS)}, got '{self.stage_weights}'")
        if len(self.channels) != 3:
            raise ValueError(f"channels must give 3 U-net widths, got {self.channels}")
        counts = [get_scheme(s).num_points for s in self.input.schemes]
        if counts != sorted(counts, reverse=True):
            raise ValueError(f"input.schemes must be in decreasing landmark count (chaining order, §3.2), got "
                             f"{list(self.input.schemes)} with {counts} points")
        if not 0 <= self.attention_markup < len(self.input.schemes):
            raise ValueError(f"attention_markup {self.attention_markup} is not an index into {self.input.schemes}")
        if not self.softmax_temperature > 0:
            raise ValueError(f"softmax_temperature must be > 0, got {self.softmax_temperature}")
        if not 0 <= self.exit_stage <= self.num_stages:
            raise ValueError(f"exit_stage must be 0..{self.num_stages}, got {self.exit_stage}")


def _conv_bn_relu(x, filters, name):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def unet(x, channels, name):
    """The 12-conv U-net of §3.5 (full-resolution output with channels[0] features)."""
    skips = []
    for level, c in enumerate(channels):
        x = _conv_bn_relu(x, c, f"{name}_down{level}a")
        x = _conv_bn_relu(x, c, f"{name}_down{level}b")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"{name}_pool{level}")(x)
    for level in reversed(range(len(channels))):
        c = channels[level]
        # Bilinear upsampling followed by a 3×3 conv instead of transposed convolutions (smooth maps, §3.5).
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up{level}")(x)
        x = layers.Concatenate(name=f"{name}_skip{level}")([x, skips[level]])
        x = _conv_bn_relu(x, c, f"{name}_up{level}a")
        x = _conv_bn_relu(x, c, f"{name}_up{level}b")
    return x


@register("SumMaps")
class SumMaps(keras.layers.Layer):
    """M_i = Σ_l Φ(x, y, l): the sum of one markup's attention maps, kept as a 1-channel map."""

    def call(self, maps):
        return tf.reduce_sum(maps, axis=-1, keepdims=True)


def fuse(kind, image, embedding, mask, name):
    """Feature fusion eqs. (4)–(8) building the next stage's input."""
    if kind == "F1":
        return embedding
    i_m = layers.Multiply(name=f"{name}_IM")([image, mask])
    if kind == "F2":
        return i_m
    if kind == "F3":
        return layers.Concatenate(name=name)([image, i_m])
    h_m = layers.Multiply(name=f"{name}_HM")([embedding, mask])
    if kind == "F4":
        return layers.Concatenate(name=name)([image, i_m, h_m])
    return layers.Concatenate(name=name)([image, i_m, embedding, h_m])


@register_architecture
class DeCaFA(Architecture):
    name = "decafa"
    config_class = DeCaFAConfig

    def build(self, config: DeCaFAConfig):
        spec = config.input
        image = keras.Input((spec.height, spec.width, spec.channels), name="image")
        counts = [get_scheme(s).num_points for s in spec.schemes]
        outputs, x = {}, image
        for stage in range(1, config.num_stages + 1):
            h = unet(x, config.channels, f"s{stage}")
            coords, maps, prev = [], [], h
            for k, n in enumerate(counts):
                source = prev if config.chained else h
                t = layers.Conv2D(n, 1, name=f"s{stage}_transfer{k}")(source)
                prev = t
                phi = SpatialSoftmax(config.softmax_temperature, name=f"s{stage}_softmax{k}")(t)
                maps.append(phi)
                coords.append(SoftArgmax(normalize="none", name=f"s{stage}_argmax{k}")(phi))
            lm = coords[0] if len(coords) == 1 else layers.Concatenate(axis=1, name=f"s{stage}_points")(coords)
            outputs[f"landmarks_stage{stage}"] = lm
            if stage < config.num_stages:
                m = SumMaps(name=f"s{stage}_attention")(maps[config.attention_markup])
                x = fuse(config.fusion, image, h, m, f"s{stage}_fusion")
        outputs["landmarks"] = outputs[f"landmarks_stage{config.num_stages}"]
        return keras.Model(image, outputs, name=f"decafa_s{config.num_stages}")

    def loss(self, config: DeCaFAConfig, outputs, batch):
        """Eq. (10): Σ_i λ_i Σ_k (1/L_k)·Σ_l |ẑ − z*|₁ over the points each sample is annotated with."""
        weights = STAGE_WEIGHTS[config.stage_weights]
        # The weights of §4 are given for 4 stages; fewer stages keep the last ones (the final stage weighs 1).
        weights = weights[len(weights) - config.num_stages:]
        true, mask = batch["points"], tf.cast(batch["mask"], tf.float32)
        batch_size = tf.cast(tf.shape(true)[0], tf.float32)
        total, parts = 0.0, {}
        for stage, lam in enumerate(weights, start=1):
            err = tf.reduce_sum(tf.abs(outputs[f"landmarks_stage{stage}"] - true), -1) * mask  # [B, N]
            stage_loss = 0.0
            for _, start, stop in scheme_slices(config.input.schemes):
                stage_loss += tf.reduce_sum(err[:, start:stop]) / float(stop - start)
            stage_loss = stage_loss / batch_size
            parts[f"stage{stage}"] = stage_loss
            total += lam * stage_loss
        return total, parts

    def inference_model(self, config: DeCaFAConfig, model):
        """The primary markup (first scheme) from the last stage, or from stage ``exit_stage`` (early exit).

        A functional sub-model of an earlier stage's output contains only the layers that output depends on, so
        an early-exit model really runs only the first s stages. Taken from the model's outputs, not a layer by
        name: a QAT copy renames its layers (``quant_…``) and a stripped pruned model shares layer objects with
        the pruning graph, whose ``layer.output`` belongs to that other graph.
        """
        stage = config.exit_stage or config.num_stages
        n = get_scheme(config.input.schemes[0]).num_points
        lm = model.output[f"landmarks_stage{stage}"]
        if lm.shape[1] != n:
            lm = lm[:, :n]  # the primary markup comes first (chained transfer layers run in scheme order)
        return keras.Model(model.input, lm, name=f"decafa_exit{stage}")


register_preset("decafa", "decafa", {}, "DeCaFA, 4 stages, F5 fusion, chained 68→5 tasks (paper defaults)")
register_preset("decafa_s1", "decafa", {"num_stages": 1}, "DeCaFA with one stage (fastest)")
register_preset("decafa_lite", "decafa", {"num_stages": 2, "channels": (16, 32, 64)},
                "DeCaFA, 2 stages at quarter width: trainable on a laptop CPU")
