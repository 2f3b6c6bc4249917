"""Backbone registry shared by every architecture: one builder per network, no class per backbone.

``build_backbone(name, input_tensor, stride=32, ...)`` grows a feature extractor on a Keras tensor inside the
caller's functional graph (layers are *not* wrapped in a nested model, so tfmot can clone and quantize the whole
network) and returns the feature map at the requested output stride.

Input normalisation: the model input is ``x = (pixel - mean) / std`` with the InputSpec's mean/std. Each backbone
declares the range it was designed (and ImageNet-trained) for; when the two differ, one ``Rescaling`` layer maps
the InputSpec normalisation onto the backbone's (it folds into a MUL/ADD in TFLite). keras.applications'
MobileNetV3 ships its own ``[0, 255] → [-1, 1]`` rescaling layer: it is switched off
(``include_preprocessing=False``) so the pixel normalisation is written in exactly one place.

Strides (PIPNet §4.2.1): 32 is the backbone's own; 64/128 add Conv3×3(s2, 512)-BN-ReLU blocks, 16 adds a
Deconv4×4(s2, 512)-BN-ReLU block.

Example::

    image = keras.Input((256, 256, 3))
    feats = build_backbone("mobilenet_v3_large", image, stride=32)   # [B, 8, 8, 960]
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Callable, Optional

from tfalign._keras import keras, layers, register, tf

# Output strides reachable with the paper's extra layers.
STRIDES = (16, 32, 64, 128)
# BatchNorm moving-average momentum of every backbone (PyTorch's 0.1 update rate, as in the authors' code).
BN_MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class BackboneInfo:
    """A registered builder and the pixel range its first layer expects: ``x = (pixel - mean) / std``."""
    name: str
    builder: Callable
    input_mean: float
    input_std: float
    description: str = ""


_BACKBONES: dict[str, BackboneInfo] = {}


def register_backbone(name: str, input_mean: float = 127.5, input_std: float = 127.5, description: str = ""):
    """Decorator: ``@register_backbone("resnet18") def _resnet18(x, width=1.0): ... return features``.

    The builder takes a Keras tensor already normalised as ``(pixel - input_mean) / input_std`` and returns the
    stride-32 feature map built on it in the same graph.
    """
    def wrap(fn):
        if name in _BACKBONES:
            raise ValueError(f"backbone '{name}' is already registered")
        _BACKBONES[name] = BackboneInfo(name, fn, float(input_mean), float(input_std), description)
        return fn
    return wrap


def list_backbones() -> dict[str, str]:
    return {n: b.description for n, b in sorted(_BACKBONES.items())}


def get_backbone(name: str) -> BackboneInfo:
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; known: {', '.join(sorted(_BACKBONES))}")
    return _BACKBONES[name]


def build_backbone(name: str, input_tensor, *, stride: int = 32, weights: Optional[str] = None,
                   input_mean: float = 127.5, input_std: float = 127.5, extra_channels: int = 512,
                   prefix: str = ""):
    """Feature map of backbone ``name`` on ``input_tensor`` at output ``stride``.

    Args:
        name: a registered backbone (``resnet18``, ``mobilenet_v2``, ``mobilenet_v3_small``,
            ``mobilenet_v3_large``).
        input_tensor: Keras tensor [B, H, W, C] normalised as ``(pixel - input_mean) / input_std``.
        stride: 16, 32, 64 or 128; H and W must be divisible by it.
        weights: None (random initialisation) or the path of a Keras ``.h5`` weights file whose layer names match
            this backbone (e.g. saved from a model built here); loaded by layer name.
        input_mean, input_std: the normalisation of ``input_tensor`` (the InputSpec's).
        extra_channels: channels of the stride-changing layers (512 in the paper).
        prefix: name prefix for the added layers (lets two backbones live in one model).
    """
    info = get_backbone(name)
    if stride not in STRIDES:
        raise ValueError(f"stride must be one of {STRIDES}, got {stride}")
    h, w = input_tensor.shape[1], input_tensor.shape[2]
    if h is None or w is None or h % stride or w % stride:
        raise ValueError(f"input size {h}x{w} must be static and divisible by stride {stride}")
    if weights is not None and not os.path.isfile(weights):
        raise ValueError(f"backbone weights file not found: {weights}")
    if input_std <= 0:
        raise ValueError(f"input_std must be > 0, got {input_std}")

    x = input_tensor
    scale = input_std / info.input_std
    offset = (input_mean - info.input_mean) / info.input_std
    if not (math.isclose(scale, 1.0) and math.isclose(offset, 0.0, abs_tol=1e-9)):
        x = layers.Rescaling(scale, offset, name=f"{prefix}{name}_input_rescale")(x)
    features = info.builder(x)
    if weights is not None:
        _load_by_name(keras.Model(input_tensor, features), weights)

    # Extra layers change the stride exactly as PIPNet §4.2.1 describes.
    for i in range(int(math.log2(stride // 32)) if stride > 32 else 0):
        features = _conv_bn_relu(features, extra_channels, 3, 2, f"{prefix}extra_down{i + 1}")
    if stride == 16:
        features = layers.Conv2DTranspose(extra_channels, 4, strides=2, padding="same", use_bias=False,
                                          name=f"{prefix}extra_up1_deconv")(features)
        features = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}extra_up1_bn")(features)
        features = layers.ReLU(name=f"{prefix}extra_up1_relu")(features)
    return features


def _load_by_name(model, path: str):
    import h5py  # a TensorFlow dependency
    try:
        with h5py.File(path, "r") as fh:
            group = fh["model_weights"] if "model_weights" in fh else fh
            names = set(group.attrs.get("layer_names", []))
    except OSError as exc:
        raise ValueError(f"{path}: not a Keras .h5 weights file ({exc})") from None
    names = {n.decode() if isinstance(n, bytes) else n for n in names}
    wanted = {l.name for l in model.layers if l.weights}
    if not wanted & names:
        raise ValueError(f"{path}: no layer name matches the backbone (file has e.g. {sorted(names)[:3]}, "
                         f"backbone has e.g. {sorted(wanted)[:3]})")
    model.load_weights(path, by_name=True)


def _conv_bn_relu(x, filters, kernel, strides, name):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


# --- ResNet-18 (He et al. 2016): keras.applications has none --------------------------------------------------
# ImageNet statistics (mean ≈ 0.449*255, std ≈ 0.226*255 averaged over RGB), the range torchvision weights use.
@register_backbone("resnet18", input_mean=114.5, input_std=57.6,
                   description="ResNet-18, basic blocks [2, 2, 2, 2], 512 channels at stride 32")
def _resnet18(x):
    # Explicit padding reproduces PyTorch's conv1/maxpool geometry so ported ImageNet weights line up.
    x = layers.ZeroPadding2D(3, name="resnet18_conv1_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="resnet18_conv1")(x)
    x = layers.BatchNormalization(epsilon=1e-5, momentum=BN_MOMENTUM, name="resnet18_bn1")(x)
    x = layers.ReLU(name="resnet18_relu1")(x)
    x = layers.ZeroPadding2D(1, name="resnet18_pool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="resnet18_pool")(x)
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            strides = 2 if stage > 1 and block == 0 else 1
            x = _basic_block(x, filters, strides, f"resnet18_layer{stage}_{block}")
    return x


def _basic_block(x, filters, strides, name):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_down_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=1e-5, momentum=BN_MOMENTUM, name=f"{name}_down_bn")(shortcut)
    if strides != 1:
        x = layers.ZeroPadding2D(1, name=f"{name}_pad1")(x)
        x = layers.Conv2D(filters, 3, strides=strides, use_bias=False, name=f"{name}_conv1")(x)
    else:
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    x = layers.BatchNormalization(epsilon=1e-5, momentum=BN_MOMENTUM, name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(epsilon=1e-5, momentum=BN_MOMENTUM, name=f"{name}_bn2")(x)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_out")(x)


# --- MobileNetV3 activations as named layers ----------------------------------------------------------------------
@register("HardSwish")
class HardSwish(layers.Layer):
    """``x * relu6(x + 3) / 6`` (MobileNetV3), one layer: the TFLite converter fuses it into the builtin HARD_SWISH.

    keras.applications writes it as two TFOpLambdas + ReLU + Multiply; tfmot cannot annotate TFOpLambdas for QAT
    (``quantize_apply`` fails to re-clone them) and channel pruning has to guess what they do. As one named,
    weightless layer it is elementwise by declaration (``elementwise``), gets a QuantizeConfig in
    ``quantization.qat`` and is replaced in the graph without changing the model's weight order.

    ``keep_float_in_int8``: measured with LiteRT 2.3 (1 thread, XNNPACK), an int8 HARD_SWISH runs ~30x slower than
    the float one (no XNNPACK int8 kernel; the builtin fallback also splits the delegated graph), which made the
    int8 MobileNetV3 slower than float32. Dequantize → float HARD_SWISH → quantize stays inside XNNPACK and costs
    little; the convolutions around it stay int8 (bench/results/compression.json).
    """
    elementwise = True
    keep_float_in_int8 = True

    def call(self, x):
        return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)

    def compute_output_shape(self, input_shape):
        return input_shape


@register("HardSigmoid")
class HardSigmoid(layers.Layer):
    """``relu6(x + 3) / 6``: the squeeze-excite gate of MobileNetV3 (TFLite ADD with fused RELU6, then MUL).

    It acts on [B, 1, 1, C] gates, so int8 costs nothing here; it is quantized like any other layer.
    """
    elementwise = True

    def call(self, x):
        return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)

    def compute_output_shape(self, input_shape):
        return input_shape


def _activation_name(x, kind: str) -> str:
    # Named after the layer feeding it ("expanded_conv_3/expand/BatchNorm" -> "expanded_conv_3_expand_hard_swish"),
    # so names are stable and unique whatever else the caller's graph holds. No "/": the int8 exporter finds a
    # layer's ops by the "/"-separated scopes of TFLite tensor names (mobile_export.tflite.float_nodes).
    source = x._keras_history.layer.name  # noqa: SLF001 - Keras tensors carry their producing layer here
    return f"{source.removesuffix('/BatchNorm').replace('/', '_')}_{kind}"


@contextlib.contextmanager
def _named_mobilenet_v3_activations():
    """Build keras.applications' MobileNetV3 with :class:`HardSwish`/:class:`HardSigmoid` layers.

    ``mobilenet_v3.MobileNetV3`` looks its ``hard_swish`` and ``hard_sigmoid`` helpers up as module globals when
    it builds (tf_keras 2.21: ``activation = hard_swish``; ``_se_block`` calls ``hard_sigmoid``), so swapping them
    for the duration of the build changes only those activations: every weighted layer, its name and the weight
    order stay keras.applications' own (the shipped pipnet_mbv3 weights load unchanged; tests/test_backbones.py).
    """
    from tf_keras.src.applications import mobilenet_v3 as app_module

    missing = [n for n in ("hard_swish", "hard_sigmoid") if not callable(getattr(app_module, n, None))]
    if missing:
        raise RuntimeError(f"tf_keras.src.applications.mobilenet_v3 has no {missing}: this tf_keras changed "
                           "MobileNetV3's internals; update tfalign/models/backbones.py")
    saved = app_module.hard_swish, app_module.hard_sigmoid
    app_module.hard_swish = lambda x: HardSwish(name=_activation_name(x, "hard_swish"))(x)
    app_module.hard_sigmoid = lambda x: HardSigmoid(name=_activation_name(x, "hard_sigmoid"))(x)
    try:
        yield
    finally:
        app_module.hard_swish, app_module.hard_sigmoid = saved


# --- MobileNets from keras.applications (weights=None; their ImageNet range is [-1, 1]) -------------------------
def _application_features(app_fn, x, **kwargs):
    # Built on our tensor (input_tensor=...), the application's layers join the caller's graph unnested.
    if app_fn in (keras.applications.MobileNetV3Small, keras.applications.MobileNetV3Large):
        with _named_mobilenet_v3_activations():
            app = app_fn(input_tensor=x, include_top=False, weights=None, **kwargs)
    else:
        app = app_fn(input_tensor=x, include_top=False, weights=None, **kwargs)
    for layer in app.layers:
        if isinstance(layer, layers.BatchNormalization):
            # keras.applications uses 0.999 (tuned for ImageNet's 1M-step runs): after a few hundred steps the
            # moving statistics have barely left their initial values and inference is wrong. 0.9 is PyTorch's
            # default, i.e. what the authors' PIPNet trained with; it is kept in get_config.
            layer.momentum = BN_MOMENTUM
    return app.output


@register_backbone("mobilenet_v2", description="MobileNetV2 1.0 (keras.applications), 1280 channels")
def _mobilenet_v2(x):
    return _application_features(keras.applications.MobileNetV2, x, alpha=1.0)


@register_backbone("mobilenet_v3_small", description="MobileNetV3-Small 1.0 (keras.applications), 576 channels")
def _mobilenet_v3_small(x):
    return _application_features(keras.applications.MobileNetV3Small, x, include_preprocessing=False)


@register_backbone("mobilenet_v3_large", description="MobileNetV3-Large 1.0 (keras.applications), 960 channels")
def _mobilenet_v3_large(x):
    return _application_features(keras.applications.MobileNetV3Large, x, include_preprocessing=False)
