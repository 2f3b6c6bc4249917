"""The face detector network (Keras): a tiny MobileNetV2-style backbone + a 3-level feature pyramid, stride-4 heads.

Input: RGB pixels 0..255 (letterboxed, :func:`tfalign.detector.letterbox`), normalised inside the graph so the
``.tflite`` takes the same numbers NumPy hands it. Output: one tensor [B, S/4, S/4, 5] = sigmoid centre heatmap,
log(w / 4), log(h / 4), sub-cell offset (x, y) — one output so every runner (LiteRT, ``mobile_export.tflite``)
reads it the same way. Only stock Keras layers: Conv2D/DepthwiseConv2D/BN/ReLU6/Add/UpSampling2D/Concatenate
convert to TFLite builtin ops, so no custom layer is needed.
"""
from __future__ import annotations

from tfalign._keras import keras, layers, tf

DEFAULT_WIDTHS = (16, 24, 48, 96)
BN_MOMENTUM = 0.97
# The heatmap's bias starts at logit(0.01): almost every cell is background, and a 0.5 start makes the focal
# loss of the first steps huge (CenterNet's prior).
HEAT_PRIOR_BIAS = -4.6


def _conv_bn(x, filters, kernel, strides, name, act=True):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if act else x


def _inverted_residual(x, filters, strides, expand, name):
    """MobileNetV2 block: 1×1 expand, 3×3 depthwise, 1×1 linear project (+ residual when shapes match)."""
    inp = x
    c = x.shape[-1]
    if expand != 1:
        x = _conv_bn(x, c * expand, 1, 1, f"{name}_expand")
    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = _conv_bn(x, filters, 1, 1, f"{name}_project", act=False)
    if strides == 1 and c == filters:
        x = layers.Add(name=f"{name}_add")([inp, x])
    return x


def build(input_size: int = 128, widths=DEFAULT_WIDTHS, fpn: int = 32, name: str = "face_detector") -> keras.Model:
    """Detector for ``input_size`` × ``input_size`` RGB (multiple of 32); ``widths`` = channels at strides 4..32."""
    if input_size % 32 or input_size < 32:
        raise ValueError(f"input_size: must be a multiple of 32 and >= 32, got {input_size}")
    widths = tuple(int(w) for w in widths)
    if len(widths) != 4 or min(widths) <= 0:
        raise ValueError(f"widths: expected 4 positive channel counts (strides 4, 8, 16, 32), got {widths}")
    inp = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(inp)
    x = _conv_bn(x, widths[0], 3, 2, "stem")                                       # /2
    x = _inverted_residual(x, widths[0], 2, 3, "s4_0")                            # /4
    c4 = _inverted_residual(x, widths[0], 1, 3, "s4_1")
    x = _inverted_residual(c4, widths[1], 2, 4, "s8_0")                           # /8
    c8 = _inverted_residual(x, widths[1], 1, 4, "s8_1")
    x = _inverted_residual(c8, widths[2], 2, 4, "s16_0")                          # /16
    c16 = _inverted_residual(x, widths[2], 1, 4, "s16_1")
    x = _inverted_residual(c16, widths[3], 2, 4, "s32_0")                         # /32: context for big faces
    x = _inverted_residual(x, widths[3], 1, 4, "s32_1")
    c32 = _inverted_residual(x, widths[3], 1, 4, "s32_2")
    # Top-down pyramid: big faces are seen at stride 32, small ones need stride-4 detail; heads read the sum.
    p = _conv_bn(c32, fpn, 1, 1, "lat32")
    for level, c in (("16", c16), ("8", c8), ("4", c4)):
        p = layers.UpSampling2D(2, interpolation="nearest", name=f"up{level}")(p)
        p = layers.Add(name=f"merge{level}")([p, _conv_bn(c, fpn, 1, 1, f"lat{level}")])
        p = _inverted_residual(p, fpn, 1, 2, f"fpn{level}")
    heat = _conv_bn(p, fpn, 3, 1, "heat_pre")
    heat = layers.Conv2D(1, 1, activation="sigmoid", name="heat",
                         bias_initializer=keras.initializers.Constant(HEAT_PRIOR_BIAS))(heat)
    reg = _conv_bn(p, fpn, 3, 1, "reg_pre")
    reg = layers.Conv2D(4, 1, name="reg")(reg)
    out = layers.Concatenate(name="detections")([heat, reg])
    return keras.Model(inp, out, name=name)


def loss(pred, target_heat, target_reg, reg_mask):
    """CenterNet loss. ``target_heat`` [B, H, W] Gaussians (1 at face centres), ``target_reg`` [B, H, W, 4],
    ``reg_mask`` [B, H, W] 1 at face centres. Returns (total, focal, size+offset L1), each a scalar tensor.
    """
    p = tf.clip_by_value(pred[..., 0], 1e-4, 1 - 1e-4)
    target_heat, target_reg, reg_mask = (tf.cast(t, tf.float32) for t in (target_heat, target_reg, reg_mask))
    pos = tf.cast(tf.equal(target_heat, 1.0), tf.float32)
    neg_w = tf.pow(1.0 - target_heat, 4.0)
    pos_loss = -tf.math.log(p) * tf.square(1.0 - p) * pos
    neg_loss = -tf.math.log(1.0 - p) * tf.square(p) * neg_w * (1.0 - pos)
    n = tf.maximum(tf.reduce_sum(pos), 1.0)
    focal = (tf.reduce_sum(pos_loss) + tf.reduce_sum(neg_loss)) / n
    l1 = tf.reduce_sum(tf.abs(pred[..., 1:] - target_reg) * reg_mask[..., None]) / tf.maximum(
        tf.reduce_sum(reg_mask), 1.0)
    return focal + l1, focal, l1
