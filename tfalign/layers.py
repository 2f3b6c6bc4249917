"""Shared, exportable layers used by every architecture.

Everything here converts to TFLite *builtin* ops (no Flex, no custom ops) and to CoreML, int8 included:
bilinear sampling is written once with FLOOR + GATHER on a flattened feature map (``tf.image.crop_and_resize``
and ``tf.gather_nd`` with batch dims are avoided), and RoIAlign, shape-indexed patches and deformable convolution
are all built on :func:`bilinear_sample`.

Coordinate conventions:
    * Feature-map pixel coordinates: the centre of column ``i`` is ``x = i`` (so the map spans [-0.5, W - 0.5]).
    * Normalised coordinates (model outputs, contract ``xy_normalized`` with origin ``edge``):
      ``u = (x + 0.5) / W``.
"""
from __future__ import annotations

import numpy as np

from tfalign._keras import keras, register, tf


def normalized_to_pixel(points, height, width):
    """[.., 2] normalised (edge origin) → feature-map pixel coordinates (centre convention)."""
    scale = tf.constant([float(width), float(height)], dtype=points.dtype)
    return points * scale - 0.5


def pixel_to_normalized(points, height, width):
    scale = tf.constant([float(width), float(height)], dtype=points.dtype)
    return (points + 0.5) / scale


# Name scope of the sampling coordinates, bilinear weights and indices (:func:`bilinear_sample_xy`). A layer with
# ``float_coordinates_in_int8 = True`` keeps the ops in it float in int8 exports (mobile_export.tflite.float_nodes):
# quantized to 8 bits over a 64-pixel map, a coordinate moves in quarter-pixel steps and its bilinear weights take
# four values.
COORDINATE_SCOPE = "sample_coords"


def bilinear_sample(features, points):
    """Sample ``features`` [B, H, W, C] at ``points`` [B, P, 2] (x, y in pixel coords) → [B, P, C].

    Outside the map the features are taken as zero (RoIAlign's convention), weighted by the bilinear weights of
    the in-range corners. Static H and W are required (they always are in exported models).
    """
    return bilinear_sample_xy(features, points[..., 0], points[..., 1])


def bilinear_sample_xy(features, x, y):
    """:func:`bilinear_sample` with the coordinates as two [B, P] tensors.

    The map is padded with one ring of zeros and the coordinates are clipped into the padded map, so every corner
    is a valid index and out-of-map corners read the zero ring: the same values as masking invalid corners, but
    without the per-corner comparisons and LOGICAL_ANDs (boolean ops run outside XNNPACK and cost more in LiteRT
    than the gathers themselves). Callers that build x and y separately also avoid slicing the interleaved last
    axis of a [B, P, 2] tensor, which LiteRT does element by element.
    """
    shape = features.shape
    height, width, channels = int(shape[1]), int(shape[2]), int(shape[3])
    pw, ph = width + 2, height + 2
    batch = tf.shape(features)[0]
    num = tf.shape(x)[1]
    with tf.name_scope(COORDINATE_SCOPE):  # layers with float_coordinates_in_int8 keep these ops float in int8
        # Padded coordinates: column i of the map is column i + 1 of the padded one; -1 and W are the zero ring.
        xp = tf.clip_by_value(x, -1.0, float(width)) + 1.0
        yp = tf.clip_by_value(y, -1.0, float(height)) + 1.0
        # x0 ≤ W keeps x0 + 1 inside the padded map when x sits exactly on the far ring (its weight is then 1 on
        # x0 + 1).
        x0 = tf.minimum(tf.floor(xp), float(width))
        y0 = tf.minimum(tf.floor(yp), float(height))
        wx1 = xp - x0
        wy1 = yp - y0
        wx0 = 1.0 - wx1
        wy0 = 1.0 - wy1
        base = tf.reshape(tf.range(batch) * (ph * pw), [-1, 1])
        top_left = tf.reshape(base + tf.cast(y0, tf.int32) * pw + tf.cast(x0, tf.int32), [-1])
        weights = (wx0 * wy0, wx1 * wy0, wx0 * wy1, wx1 * wy1)
    padded = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]])
    flat = tf.reshape(padded, [-1, channels])

    def corner(offset, weight):
        vals = tf.reshape(tf.gather(flat, top_left + offset), [batch, num, channels])
        return vals * tf.expand_dims(weight, -1)

    return (corner(0, weights[0]) + corner(1, weights[1]) + corner(pw, weights[2]) + corner(pw + 1, weights[3]))


def patch_grid(size: int, spacing: float = 1.0):
    """[size*size, 2] offsets (x, y) of a square sampling grid centred on 0, row-major, ``spacing`` apart."""
    r = (tf.range(size, dtype=tf.float32) - (size - 1) / 2.0) * spacing
    gy, gx = tf.meshgrid(r, r, indexing="ij")
    return tf.stack([tf.reshape(gx, [-1]), tf.reshape(gy, [-1])], axis=-1)


@register("BilinearSample")
class BilinearSample(keras.layers.Layer):
    """Keras layer around :func:`bilinear_sample`: inputs ``[features, points]``.

    Args:
        normalized: if True, ``points`` are normalised edge-origin coordinates of the feature map.
    """

    def __init__(self, normalized: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.normalized = normalized

    def call(self, inputs):
        features, points = inputs
        if self.normalized:
            points = normalized_to_pixel(points, features.shape[1], features.shape[2])
        return bilinear_sample(features, points)

    def get_config(self):
        return {**super().get_config(), "normalized": self.normalized}


def separable_patches(features, cx, cy, size: int, spacing: float):
    """``size`` × ``size`` bilinear patches on a regular grid around centres ``cx``, ``cy`` [B, P, 1] (pixel coords).

    Same values as :func:`bilinear_sample_xy` at every grid point (zero outside the map), computed separably: one
    GATHER of each point's K × K window (K = ⌊(size − 1)·spacing⌋ + 3) and two BATCH_MATMULs with the per-axis
    bilinear ("tent") weights. For spacing < 1 the windows overlap their own samples heavily: RoIAlign of 8 × 8
    samples 0.6 px apart reads 49 rows per point instead of 4 × 64, and the four [P·S², C] corner products and
    their sum become two small matmuls. No padding either: the window is clipped into the map and a sample's
    weights are taken against the window's own pixels, so a corner off the map has no pixel and counts as zero.
    """
    height, width, channels = int(features.shape[1]), int(features.shape[2]), int(features.shape[3])
    k = int((size - 1) * spacing) + 3
    if k > min(height, width):
        raise ValueError(f"separable_patches: a {size}-sample patch {spacing} px apart needs a {k}-pixel window; "
                         f"the map is only {height} × {width}")
    batch = tf.shape(cx)[0]
    num = tf.shape(cx)[1]
    offsets = (tf.range(size, dtype=cx.dtype) - (size - 1) / 2.0) * spacing  # [S]
    first = -(size - 1) / 2.0 * spacing
    taps = tf.range(k, dtype=cx.dtype)

    def axis(centre, n):
        # Beyond the zero ring every weight is 0, as in bilinear_sample_xy's clipping.
        p = tf.clip_by_value(centre + offsets, -1.0, float(n))  # [B, P, S]
        start = tf.clip_by_value(tf.floor(centre + first), 0.0, float(n - k))  # [B, P, 1]
        weights = tf.nn.relu(1.0 - tf.abs(tf.expand_dims(p, -1) - tf.expand_dims(start + taps, -2)))  # [B,P,S,K]
        return tf.cast(start, tf.int32), tf.reshape(weights, [-1, size, k])

    x0, wx = axis(cx, width)
    y0, wy = axis(cy, height)
    flat = tf.reshape(features, [-1, channels])
    ki = tf.range(k)
    base = tf.reshape(tf.range(batch) * (height * width), [-1, 1, 1, 1])
    # Window gathered x-major ([.., Kx, Ky]) so the x-step contracts the leading window axis.
    rows = tf.reshape((y0 + ki) * width, [batch, num, 1, k])
    cols = tf.reshape(x0 + ki, [batch, num, k, 1])
    window = tf.reshape(tf.gather(flat, tf.reshape(base + rows + cols, [-1])), [-1, k, k * channels])
    t = tf.reshape(tf.matmul(wx, window), [-1, size, k, channels])  # [BP, Sx, Ky, C]
    t = tf.reshape(tf.transpose(t, [0, 2, 1, 3]), [-1, k, size * channels])  # [BP, Ky, Sx·C]
    out = tf.matmul(wy, t)  # [BP, Sy, Sx·C]
    return tf.reshape(out, [batch, num, size, size, channels])


PATCH_IMPLS = ("auto", "corners", "separable")


@register("PointPatches")
class PointPatches(keras.layers.Layer):
    """RoIAlign around points: a ``size`` × ``size`` bilinear patch centred on each point.

    Inputs ``[features [B, H, W, C], points [B, P, 2] normalised (edge origin)]`` → ``[B, P, size, size, C]``.
    ``spacing`` is the distance between samples in feature-map pixels (RoIAlign with one sample per bin when
    ``spacing = roi_side / size``). Used by the two-stage model (RoIAlign), Pose-Tree-MoE (shape-indexed patches).
    ``impl``: ``corners`` samples every grid point with :func:`bilinear_sample_xy` (four GATHERs of P·S² rows);
    ``separable`` uses :func:`separable_patches` (one GATHER of P·K² rows, two BATCH_MATMULs); ``auto`` picks
    ``separable`` when samples are closer than a pixel (the windows then overlap). Same outputs either way.
    """

    def __init__(self, size: int, spacing: float = 1.0, impl: str = "auto", **kwargs):
        super().__init__(**kwargs)
        if size <= 0:
            raise ValueError(f"PointPatches size must be > 0, got {size}")
        if impl not in PATCH_IMPLS:
            raise ValueError(f"PointPatches impl must be one of {'|'.join(PATCH_IMPLS)}, got '{impl}'")
        self.size = int(size)
        self.spacing = float(spacing)
        self.impl = impl

    def resolved_impl(self, height: int, width: int) -> str:
        if self.impl != "auto":
            return self.impl
        fits = int((self.size - 1) * self.spacing) + 3 <= min(height, width)
        return "separable" if self.spacing < 1.0 and fits else "corners"

    def call(self, inputs):
        features, points = inputs
        h, w = features.shape[1], features.shape[2]
        centres = normalized_to_pixel(points, h, w)  # [B, P, 2]
        # x and y handled separately: slicing the small [B, P, 1] centres is cheap, the [B, P*S*S] grid is not.
        cx, cy = centres[..., 0:1], centres[..., 1:2]
        if self.resolved_impl(h, w) == "separable":
            return separable_patches(features, cx, cy, self.size, self.spacing)
        grid = patch_grid(self.size, self.spacing)  # [S*S, 2]
        num = tf.shape(points)[1]
        batch = tf.shape(points)[0]
        x = tf.reshape(cx + grid[None, None, :, 0], [batch, -1])
        y = tf.reshape(cy + grid[None, None, :, 1], [batch, -1])
        vals = bilinear_sample_xy(features, x, y)
        return tf.reshape(vals, [-1, num, self.size, self.size, features.shape[-1]])

    def get_config(self):
        return {**super().get_config(), "size": self.size, "spacing": self.spacing, "impl": self.impl}


@register("SpatialSoftmax")
class SpatialSoftmax(keras.layers.Layer):
    """Softmax over the spatial cells of each channel: [B, H, W, N] → [B, H, W, N], each map summing to 1."""

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, heatmaps):
        h, w, n = heatmaps.shape[1], heatmaps.shape[2], heatmaps.shape[3]
        flat = tf.reshape(heatmaps, [-1, h * w, n])
        if self.temperature != 1.0:
            flat = flat / self.temperature
        return tf.reshape(tf.nn.softmax(flat, axis=1), [-1, h, w, n])

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@register("SoftArgmax")
class SoftArgmax(keras.layers.Layer):
    """Expected (x, y) of each map of ``[B, H, W, N]`` → ``[B, N, 2]`` normalised (edge origin).

    Args:
        normalize: ``softmax`` (spatial softmax first), ``sum`` (divide non-negative maps by their sum, e.g.
            sigmoid heatmaps as in the two-stage mobile model) or ``none`` (maps are already distributions).
    """

    def __init__(self, normalize: str = "softmax", temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if normalize not in ("softmax", "sum", "none"):
            raise ValueError(f"SoftArgmax normalize must be softmax|sum|none, got '{normalize}'")
        self.normalize = normalize
        self.temperature = float(temperature)

    def call(self, heatmaps):
        h, w, n = heatmaps.shape[1], heatmaps.shape[2], heatmaps.shape[3]
        flat = tf.reshape(heatmaps, [-1, h * w, n])
        xs = (tf.range(w, dtype=heatmaps.dtype) + 0.5) / float(w)
        ys = (tf.range(h, dtype=heatmaps.dtype) + 0.5) / float(h)
        gy, gx = tf.meshgrid(ys, xs, indexing="ij")
        grid = tf.stack([tf.reshape(gx, [-1]), tf.reshape(gy, [-1])], axis=-1)  # [H*W, 2]
        if self.normalize == "sum":
            # Σp·(x, y, 1) in one MatMul, then divide 2 numbers per map: same result as dividing the map first,
            # but a broadcast int8 DIV over every cell is a slow reference kernel in TFLite (0.55 ms for 68 maps
            # of 16×16, vs 0.01 ms this way) and loses precision.
            grid1 = tf.concat([grid, tf.ones_like(grid[:, :1])], axis=-1)  # [H*W, 3]
            sums = tf.matmul(tf.transpose(flat, [0, 2, 1]), grid1)  # [B, N, 3]
            return sums[..., :2] / (sums[..., 2:] + 1e-6)
        if self.normalize == "softmax":
            prob = tf.nn.softmax(flat / self.temperature if self.temperature != 1.0 else flat, axis=1)
        else:
            prob = flat
        # [B, N, H*W] @ [H*W, 2] as a MatMul keeps the export to one FULLY_CONNECTED/BATCH_MATMUL op.
        return tf.matmul(tf.transpose(prob, [0, 2, 1]), grid)

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize, "temperature": self.temperature}


GROUP_IMPLS = ("native", "split", "depthwise")


@register("GroupConv2D")
class GroupConv2D(keras.layers.Layer):
    """Grouped convolution that converts to TFLite builtins *and* CoreML.

    tf_keras ``Conv2D(groups=g)`` fails the CoreML converter, so the groups are written as split → convolutions
    → concat (``impl="split"``), as one ``tf.nn.conv2d`` with a grouped kernel (``impl="native"``: one
    TFLite CONV_2D, CoreML ``groups``), or as a depthwise convolution whose outputs are summed within each group
    (``impl="depthwise"``: DEPTHWISE_CONV_2D + SUM). All three hold the same kernel ``[k, k, C/g, filters]``, so
    weights move between them. LiteRT (2.3) runs a grouped CONV_2D far slower per MAC than a depthwise one: 68 groups
    of 16 → 1 channel on 8 × 8 took 0.14 ms as CONV_2D and 0.05 ms as depthwise + sum (split: 0.19 ms; float32,
    1 thread, this machine). In int8 the two measured the same.
    """

    def __init__(self, filters: int, kernel_size: int, groups: int, strides: int = 1, padding: str = "same",
                 use_bias: bool = True, impl: str = "native", kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        if filters % groups:
            raise ValueError(f"GroupConv2D filters={filters} not divisible by groups={groups}")
        if impl not in GROUP_IMPLS:
            raise ValueError(f"GroupConv2D impl must be one of {'|'.join(GROUP_IMPLS)}, got '{impl}'")
        self.filters, self.kernel_size, self.groups = int(filters), int(kernel_size), int(groups)
        self.strides, self.padding, self.use_bias, self.impl = int(strides), padding, use_bias, impl
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        cin = int(input_shape[-1])
        if cin % self.groups:
            raise ValueError(f"GroupConv2D input channels {cin} not divisible by groups={self.groups}")
        k = self.kernel_size
        self.kernel = self.add_weight("kernel", (k, k, cin // self.groups, self.filters),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight("bias", (self.filters,), initializer="zeros") if self.use_bias else None
        super().build(input_shape)

    def call(self, x):
        pad = self.padding.upper()
        if self.impl == "native":
            y = tf.nn.conv2d(x, self.kernel, strides=self.strides, padding=pad)
        elif self.impl == "depthwise":
            y = self._depthwise(x, pad)
        else:
            xs = tf.split(x, self.groups, axis=-1)
            ks = tf.split(self.kernel, self.groups, axis=-1)
            y = tf.concat([tf.nn.conv2d(a, b, strides=self.strides, padding=pad) for a, b in zip(xs, ks)], -1)
        return y + self.bias if self.bias is not None else y

    def _depthwise(self, x, pad):
        k, g = self.kernel_size, self.groups
        cin_g, m = int(self.kernel.shape[2]), self.filters // g
        # Depthwise output channel (g·cin_g + i)·m + j must carry kernel[:, :, i, g·m + j].
        kernel = tf.reshape(tf.transpose(tf.reshape(self.kernel, [k, k, cin_g, g, m]), [0, 1, 3, 2, 4]),
                            [k, k, g * cin_g, m])
        y = tf.nn.depthwise_conv2d(x, kernel, [1, self.strides, self.strides, 1], pad)
        h, w = y.shape[1], y.shape[2]
        h = tf.shape(y)[1] if h is None else int(h)
        w = tf.shape(y)[2] if w is None else int(w)
        # Sum the cin_g inputs of each group; reduced over the last axis when m = 1 (the fast path in LiteRT).
        if m == 1:
            y = tf.reduce_sum(tf.reshape(y, [-1, h * w, g, cin_g]), axis=-1)
        else:
            y = tf.reduce_sum(tf.reshape(y, [-1, h * w * g, cin_g, m]), axis=2)
        return tf.reshape(y, [-1, h, w, self.filters])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "groups": self.groups, "strides": self.strides, "padding": self.padding,
                "use_bias": self.use_bias, "impl": self.impl,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


def regrouped(layer, impl: str = "native"):
    """An unbuilt copy of a ``GroupConv2D`` that computes with ``impl``; any other layer is returned as it is."""
    if not isinstance(layer, GroupConv2D) or layer.impl == impl:
        return layer
    return GroupConv2D.from_config({**layer.get_config(), "impl": impl})


def with_group_impl(model, impl: str):
    """``model`` with every top-level ``GroupConv2D`` computing as ``impl``; other layers (and their weights) are
    shared, the new convolutions get the old kernels. ``model`` itself when nothing changes.

    Full-integer exports use ``native``: int8 runs both forms equally fast on x86 SIMD kernels (EPYC, and an AMX
    Xeon with ``--no-amx``), and the grouped kernel quantizes with one scale per output channel (68) instead of one
    per depthwise channel (1,088), a smaller file. With XNNPACK's AMX kernels the grouped form is slower (whole
    mobile_two_stage int8: 1.32 vs 1.18 ms, docs/compression.md); phones have no AMX.
    """
    old = {layer.name: layer for layer in model.layers
           if isinstance(layer, GroupConv2D) and layer.impl != impl}
    if not old:
        return model
    clone = keras.models.clone_model(model, clone_function=lambda layer: regrouped(layer, impl))
    for layer in clone.layers:
        if layer.name in old:
            layer.set_weights(old[layer.name].get_weights())
    return clone


@register("DeformableConv2D")
class DeformableConv2D(keras.layers.Layer):
    """Deformable convolution (Dai et al. 2017, v1): a k×k convolution whose taps are moved by learned offsets.

    An offset convolution predicts 2·k² offsets per output pixel (initialised to zero, so training starts from a
    plain convolution); the input is sampled at ``p + p_k + Δp_k`` with :func:`bilinear_sample` (zero outside the
    map, like the zero padding of a ``same`` convolution), and the k² samples of each pixel are combined by one
    matrix product: TFLite CONV_2D/FULLY_CONNECTED + GATHER, no Flex or custom op. Stride 1, ``same`` output size.
    """

    # In int8 exports the sampling coordinates and bilinear weights stay float (COORDINATE_SCOPE); the offset
    # convolution, the gathers and the matrix product are int8. Quantized, the coordinates of a 64 × 64 map took
    # quarter-pixel steps, which cost the QAT dense U-Net 0.13 NME points (docs/compression.md).
    float_coordinates_in_int8 = True

    def __init__(self, filters: int, kernel_size: int = 3, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.use_bias = int(filters), int(kernel_size), bool(use_bias)
        k2 = self.kernel_size ** 2
        self.offset_conv = keras.layers.Conv2D(2 * k2, self.kernel_size, padding="same", kernel_initializer="zeros",
                                               bias_initializer="zeros", name="offsets")
        self.combine = keras.layers.Dense(self.filters, use_bias=self.use_bias, name="kernel")

    def build(self, input_shape):
        h, w, c = int(input_shape[1]), int(input_shape[2]), int(input_shape[3])
        k = self.kernel_size
        r = tf.range(k, dtype=tf.float32) - (k - 1) / 2.0
        ky, kx = tf.meshgrid(r, r, indexing="ij")
        taps = tf.stack([tf.reshape(kx, [-1]), tf.reshape(ky, [-1])], -1)  # [k², 2] (x, y), row-major like Conv2D
        # Tap positions as broadcastable grids, [1, 1, W, k²] for x and [1, H, 1, k²] for y, added to the offsets
        # in their [B, H, W, k²] layout: the full [1, H·W·k²] grids were constants of 147 KB each per coordinate
        # and layer in the .tflite (a third of the 64-channel dense U-Net's float32 file).
        self._base_x = tf.reshape(tf.range(w, dtype=tf.float32)[:, None] + taps[None, :, 0], [1, 1, w, k * k])
        self._base_y = tf.reshape(tf.range(h, dtype=tf.float32)[:, None] + taps[None, :, 1], [1, h, 1, k * k])
        self.offset_conv.build(input_shape)
        self.combine.build((None, k * k * c))
        super().build(input_shape)

    def call(self, x):
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        k2 = self.kernel_size ** 2
        # The offset convolution's filters are (Δx, Δy) per tap. Its even and odd filters run as two convolutions
        # (the same weights), so Δx and Δy come out as separate maps: slicing them from the interleaved output ran
        # element by element outside XNNPACK (0.6 ms per layer at 64 × 64, float and int8 alike).
        kernel, bias = self.offset_conv.kernel, self.offset_conv.bias

        def offsets(i):
            return tf.nn.conv2d(x, kernel[..., i::2], 1, "SAME") + bias[i::2]  # [B, H, W, k²]

        dx, dy = offsets(0), offsets(1)
        with tf.name_scope(COORDINATE_SCOPE):
            xs = tf.reshape(self._base_x + dx, [-1, h * w * k2])
            ys = tf.reshape(self._base_y + dy, [-1, h * w * k2])
        samples = bilinear_sample_xy(x, xs, ys)  # [B, H·W·k², C]
        return tf.reshape(self.combine(tf.reshape(samples, [-1, h, w, k2 * c])), [-1, h, w, self.filters])

    def set_conv_weights(self, kernel, bias=None):
        """Load a plain Conv2D kernel [k, k, C, F] (and bias): with zero offsets the layer then equals it."""
        k, _, c, f = kernel.shape
        weights = [tf.reshape(kernel, [k * k * c, f])]
        if self.use_bias:
            weights.append(bias if bias is not None else tf.zeros([f]))
        self.combine.set_weights([tf.convert_to_tensor(v).numpy() for v in weights])

    def get_prunable_weights(self):
        """Magnitude pruning (tfmot's protocol for custom layers): the combining matrix and the offset kernel."""
        return [self.combine.kernel, self.offset_conv.kernel]

    # Channel pruning (quantization.channel_pruning): a convolution in disguise. Its filters are the combining
    # matrix's columns; an input channel is one row per tap there and one input slice of the offset convolution.
    channel_producer = True

    def output_channel_scores(self):
        return np.abs(self.combine.kernel.numpy()).sum(axis=0)

    def output_channel_variables(self):
        return [(self.combine.kernel, 1)] + ([(self.combine.bias, 0)] if self.use_bias else [])

    def channels_sliced(self, in_idx, out_idx):
        offset_kernel, offset_bias, kernel, *bias = [np.asarray(w) for w in self.get_weights()]
        k2, c = self.kernel_size ** 2, offset_kernel.shape[2]
        kernel = kernel.reshape(k2, c, -1)
        if in_idx is not None:
            offset_kernel, kernel = offset_kernel[:, :, in_idx], kernel[:, in_idx]
        if out_idx is not None:
            kernel, bias = kernel[..., out_idx], [b[out_idx] for b in bias]
        weights = [offset_kernel, offset_bias, kernel.reshape(-1, kernel.shape[-1]), *bias]
        return {"filters": int(kernel.shape[-1])}, weights

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "use_bias": self.use_bias}
