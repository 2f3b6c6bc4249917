"""tfalign.layers: the shared exportable sampler every architecture builds on."""
import numpy as np
import pytest

from tfalign._keras import keras, tf
from tfalign.layers import (BilinearSample, GroupConv2D, PointPatches, bilinear_sample, bilinear_sample_xy,
                            with_group_impl)


def _numpy_bilinear(feat, x, y):
    """Zero outside the map, bilinear inside (RoIAlign's convention), one point of a [H, W, C] map."""
    h, w, c = feat.shape
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    out = np.zeros(c, np.float64)
    for xi, yi, wt in ((x0, y0, (x0 + 1 - x) * (y0 + 1 - y)), (x0 + 1, y0, (x - x0) * (y0 + 1 - y)),
                       (x0, y0 + 1, (x0 + 1 - x) * (y - y0)), (x0 + 1, y0 + 1, (x - x0) * (y - y0))):
        if 0 <= xi < w and 0 <= yi < h:
            out += wt * feat[yi, xi]
    return out


def _points(rng, batch, num, h, w):
    pts = rng.uniform(-2.5, max(h, w) + 1.5, (batch, num, 2)).astype(np.float32)
    # Exact corners, edges, the far border and just outside it: where clipping and padding must agree.
    special = np.array([[0, 0], [w - 1, h - 1], [w - 1, 0], [-0.5, -0.5], [w - 0.5, h - 0.5], [-1, 3], [w, 2],
                        [3, h], [w + 0.25, h + 0.25], [-1.0001, 2], [2.5, -1.5]], np.float32)
    pts[:, :len(special)] = special
    return pts


def test_bilinear_sample_matches_the_numpy_reference_inside_on_and_outside_the_border():
    rng = np.random.default_rng(0)
    feat = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
    pts = _points(rng, 2, 60, 7, 9)
    got = bilinear_sample(tf.constant(feat), tf.constant(pts)).numpy()
    want = np.array([[_numpy_bilinear(feat[b], *pts[b, p]) for p in range(60)] for b in range(2)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    # The xy form is the same function.
    got_xy = bilinear_sample_xy(tf.constant(feat), tf.constant(pts[..., 0]), tf.constant(pts[..., 1])).numpy()
    np.testing.assert_allclose(got_xy, got, atol=0)


def test_gradients_flow_to_features_and_points_inside_the_map():
    rng = np.random.default_rng(1)
    feat = tf.constant(rng.normal(size=(1, 6, 6, 2)).astype(np.float32))
    pts = tf.constant([[[2.3, 3.6], [0.4, 4.1]]], tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([feat, pts])
        out = tf.reduce_sum(bilinear_sample(feat, pts) * tf.constant([1.0, -2.0]))
    g_feat, g_pts = tape.gradient(out, [feat, pts])
    # Finite differences on the points (the sampler is linear between integer coordinates).
    eps = 1e-3
    for i in range(2):
        for k in range(2):
            d = np.zeros((1, 2, 2), np.float32)
            d[0, i, k] = eps
            f = lambda p: float(tf.reduce_sum(bilinear_sample(feat, p) * tf.constant([1.0, -2.0])))  # noqa: E731
            fd = (f(pts + d) - f(pts - d)) / (2 * eps)
            assert abs(fd - float(g_pts[0, i, k])) < 1e-2
    assert float(tf.reduce_sum(tf.abs(g_feat))) > 0
    # Far outside the map the value is 0 and so is every gradient.
    with tf.GradientTape() as tape:
        far = tf.constant([[[-5.0, 20.0]]])
        tape.watch(far)
        v = tf.reduce_sum(bilinear_sample(feat, far))
    assert float(v) == 0.0 and float(tf.reduce_sum(tf.abs(tape.gradient(v, far)))) == 0.0


@pytest.mark.parametrize("impl,size,spacing", [("corners", 3, 1.5), ("separable", 3, 1.5), ("separable", 4, 0.6),
                                               ("auto", 5, 0.3), ("separable", 2, 0.0),
                                               ("separable", 8, 0.6)])
def test_point_patches_are_bilinear_samples_on_a_grid(impl, size, spacing):
    rng = np.random.default_rng(2)
    feat = rng.normal(size=(2, 10, 12, 4)).astype(np.float32)
    # Centres inside, on and well beyond the map: both forms clip into the zero ring the same way.
    centres = rng.uniform(-0.3, 1.3, (2, 5, 2)).astype(np.float32)
    centres[0, 0] = [0.0, 1.0]
    centres[1, 0] = [-2.0, 3.0]
    got = PointPatches(size, spacing, impl=impl)([feat, centres]).numpy()
    assert got.shape == (2, 5, size, size, 4)
    offs = (np.arange(size) - (size - 1) / 2) * spacing
    for b in range(2):
        for p in range(5):
            cx, cy = centres[b, p, 0] * 12 - 0.5, centres[b, p, 1] * 10 - 0.5
            for j, oy in enumerate(offs):
                for i, ox in enumerate(offs):
                    np.testing.assert_allclose(got[b, p, j, i], _numpy_bilinear(feat[b], cx + ox, cy + oy),
                                               atol=1e-5)


def test_point_patches_auto_picks_the_separable_form_for_sub_pixel_spacing_only():
    assert PointPatches(8, 0.6).resolved_impl(32, 32) == "separable"
    assert PointPatches(8, 1.0).resolved_impl(32, 32) == "corners"
    assert PointPatches(8, 0.6).resolved_impl(6, 9) == "corners"  # the 7-pixel window does not fit
    with pytest.raises(ValueError, match="impl must be one of auto|corners|separable"):
        PointPatches(4, impl="gather")
    with pytest.raises(ValueError, match="needs a 7-pixel window"):
        PointPatches(8, 0.6, impl="separable")([np.zeros((1, 6, 9, 1), np.float32), np.zeros((1, 1, 2), np.float32)])


@pytest.mark.parametrize("layer", [BilinearSample(normalized=True), PointPatches(4, 0.5, impl="corners")])
def test_sampling_layers_round_trip_their_config(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert keras.utils.get_registered_object(keras.utils.get_registered_name(type(layer))) is type(layer)


@pytest.mark.parametrize("spacing", [1.0, 0.6])
def test_sampler_converts_to_builtin_tflite_ops_without_boolean_masks(spacing):
    """The padded form needs no comparisons or LOGICAL_AND (slow outside XNNPACK) and no Flex ops."""
    from mobile_export import tflite as tfl
    keras.utils.set_random_seed(0)  # the point head's weights: the same points whatever ran before
    feats = keras.Input((8, 8, 16), batch_size=1)
    # Points from the features (the exporter takes one image input), spread over and beyond the map.
    raw = keras.layers.Dense(34, activation="sigmoid", kernel_initializer=keras.initializers.RandomNormal(stddev=3.0))(
        keras.layers.GlobalAveragePooling2D()(feats))
    pts = keras.layers.Reshape((17, 2))(keras.layers.Rescaling(1.4, offset=-0.2)(raw))
    model = keras.Model(feats, PointPatches(4, spacing)([feats, pts]))
    blob = tfl.convert(model)
    tfl.check_builtin(blob)
    ops = set(tfl.op_names(blob))
    assert "GATHER" in ops and ("PAD" in ops) == (spacing >= 1.0)
    assert ("BATCH_MATMUL" in ops) == (spacing < 1.0)
    assert not ops & {"LOGICAL_AND", "GREATER_EQUAL", "LESS_EQUAL", "SELECT", "SELECT_V2"}
    f = np.random.default_rng(3).normal(size=(1, 8, 8, 16)).astype(np.float32)
    np.testing.assert_allclose(tfl.Runner(blob)(f), model.predict(f, verbose=0), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("groups,cin_g,mult,stride", [(6, 4, 1, 1), (4, 3, 2, 2), (3, 2, 3, 1)])
def test_group_conv_forms_share_weights_and_agree_with_per_group_convolutions(groups, cin_g, mult, stride):
    rng = np.random.default_rng(groups)
    x = rng.normal(size=(2, 7, 7, groups * cin_g)).astype(np.float32)
    ref = GroupConv2D(groups * mult, 3, groups=groups, strides=stride, impl="native")
    ref.build(x.shape)
    ref.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in ref.get_weights()])
    kernel, bias = ref.get_weights()
    # Group g reads input channels [g·cin_g, (g+1)·cin_g) and writes outputs [g·mult, (g+1)·mult).
    want = np.concatenate([tf.nn.conv2d(x[..., g * cin_g:(g + 1) * cin_g], kernel[..., g * mult:(g + 1) * mult],
                                        stride, "SAME").numpy() for g in range(groups)], -1) + bias
    for impl in ("native", "split", "depthwise"):
        layer = GroupConv2D(groups * mult, 3, groups=groups, strides=stride, impl=impl)
        layer.build(x.shape)
        layer.set_weights([kernel, bias])
        np.testing.assert_allclose(layer(x).numpy(), want, atol=1e-4, err_msg=impl)
    with pytest.raises(ValueError, match="impl must be one of native|split|depthwise"):
        GroupConv2D(4, 3, groups=2, impl="grouped")


def test_depthwise_group_conv_converts_to_depthwise_and_sum_not_a_grouped_conv():
    """LiteRT runs a grouped CONV_2D outside XNNPACK (reference kernel); the depthwise form avoids it."""
    from mobile_export import tflite as tfl
    inp = keras.Input((8, 8, 12 * 4), batch_size=1)
    model = keras.Model(inp, GroupConv2D(12, 3, groups=12, impl="depthwise")(inp))
    blob = tfl.convert(model)
    tfl.check_builtin(blob)
    ops = set(tfl.op_names(blob))
    assert {"DEPTHWISE_CONV_2D", "SUM"} <= ops and "CONV_2D" not in ops
    f = np.random.default_rng(4).normal(size=(1, 8, 8, 48)).astype(np.float32)
    np.testing.assert_allclose(tfl.Runner(blob)(f), model.predict(f, verbose=0), atol=1e-4)


def test_int8_exports_run_the_grouped_kernel_as_one_grouped_conv():
    """Same outputs, and the int8 file quantizes the kernel per group (with_group_impl), not per depthwise channel."""
    from mobile_export import tflite as tfl
    inp = keras.Input((8, 8, 3), batch_size=1)
    pre = keras.layers.Conv2D(24, 1, name="pre")(inp)
    model = keras.Model(inp, GroupConv2D(6, 3, groups=6, impl="depthwise", name="group")(pre))
    native = with_group_impl(model, "native")
    assert native.get_layer("group").impl == "native" and native.get_layer("pre") is model.get_layer("pre")
    assert with_group_impl(native, "native") is native
    x = np.random.default_rng(5).normal(size=(4, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(native(x).numpy(), model(x).numpy(), atol=1e-4)
    rep = lambda: ([x[i:i + 1]] for i in range(4))  # noqa: E731
    int8_ops = set(tfl.op_names(tfl.convert(model, quantize="int8", representative=rep)))
    assert "SUM" not in int8_ops and "DEPTHWISE_CONV_2D" not in int8_ops
    assert "SUM" in set(tfl.op_names(tfl.convert(model)))
