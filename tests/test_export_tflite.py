"""mobile_export.tflite: builtin-only conversion, the four quantization modes, metadata, int8 policy."""
import numpy as np
import pytest

from tests import export_helpers as H


@pytest.fixture(scope="module")
def tiny():
    return H.tiny()


@pytest.fixture(scope="module")
def calib(tiny):
    from mobile_export.conformance import crops
    _, config, _ = tiny
    return crops(H.synthetic(8, config, seed=0), config.input)[0]


def _interp(data):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=data)
    it.allocate_tensors()
    return it


@pytest.mark.parametrize("mode", ["none", "float16", "dynamic", "int8"])
def test_every_mode_converts_to_builtin_ops_with_static_batch_one(tiny, calib, mode):
    from mobile_export import tflite
    _, config, model = tiny
    data = tflite.convert(model, mode, lambda: iter(calib), "int8")
    it = _interp(data)
    assert list(it.get_input_details()[0]["shape"]) == [1, 32, 32, 3]
    assert list(it.get_output_details()[0]["shape"]) == [1, 68, 2]
    info = tflite.inspect(data)
    assert info["ops"]["CONV_2D"] == 2
    assert not any(k.startswith("CUSTOM") for k in info["ops"])
    assert it.get_input_details()[0]["dtype"] == (np.int8 if mode == "int8" else np.float32)


def test_float_sizes_shrink_with_quantization(tiny, calib):
    from mobile_export import tflite
    _, _, model = tiny
    sizes = {m: len(tflite.convert(model, m, lambda: iter(calib))) for m in ("none", "float16", "dynamic")}
    assert sizes["float16"] < sizes["none"] and sizes["dynamic"] < sizes["none"]


@pytest.mark.parametrize("io_dtype", ["int8", "uint8"])
def test_int8_keeps_the_spatial_softmax_float_and_quantizes_the_convolutions(tiny, calib, io_dtype):
    from mobile_export import tflite
    _, _, model = tiny
    data = tflite.convert(model, "int8", lambda: iter(calib), io_dtype)
    it = _interp(data)
    assert it.get_input_details()[0]["dtype"] == np.dtype(io_dtype)
    scale, _ = it.get_input_details()[0]["quantization"]
    assert scale > 0
    info = tflite.inspect(data)
    float_kinds = {f.split()[0] for f in info["float_ops"]}
    assert "SOFTMAX" in float_kinds and "CONV_2D" not in float_kinds
    assert 0.0 < info["int8_coverage"] < 1.0
    # the landmark output comes from a float layer: it stays float32 rather than an 8-bit grid
    assert it.get_output_details()[0]["dtype"] == np.float32


def test_sum_normalised_soft_argmax_is_fully_quantized(calib):
    from mobile_export import tflite
    _, _, model = H.tiny("sum")
    data = tflite.convert(model, "int8", lambda: iter(calib))
    info = tflite.inspect(data)
    assert "SOFTMAX" not in info["ops"]
    assert _interp(data).get_output_details()[0]["dtype"] == np.int8


def test_keeps_float_policy_is_by_layer_type_with_an_override():
    from mobile_export.tflite import keeps_float
    from tfalign.layers import SoftArgmax, SpatialSoftmax
    assert keeps_float(SoftArgmax("softmax")) and keeps_float(SpatialSoftmax())
    assert keeps_float(SoftArgmax("none"))  # reads a distribution: int8 cells would lose its mass (DeCaFA)
    assert not keeps_float(SoftArgmax("sum"))
    layer = SoftArgmax("sum")
    layer.keep_float_in_int8 = True
    assert keeps_float(layer)


def test_flex_op_is_refused_naming_the_op_and_the_layer(tiny):
    from mobile_export import tflite
    from tfalign._keras import keras, layers, tf

    class CropResize(layers.Layer):
        def call(self, x):
            return tf.image.crop_and_resize(x, [[0.0, 0.0, 1.0, 1.0]], [0], [8, 8])

    inp = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(4, 3, padding="same", name="c")(inp)
    model = keras.Model(inp, CropResize(name="face_cropper")(x))
    with pytest.raises(tflite.ExportError) as err:
        tflite.convert(model)
    assert "CropAndResize" in str(err.value) and "face_cropper" in str(err.value)


def test_bad_arguments_name_the_flag(tiny):
    from mobile_export import tflite
    _, _, model = tiny
    with pytest.raises(ValueError, match="--quantize"):
        tflite.convert(model, "int4")
    with pytest.raises(ValueError, match="--io-dtype"):
        tflite.convert(model, "int8", lambda: iter([]), "int16")
    with pytest.raises(ValueError, match="calibration"):
        tflite.convert(model, "int8", None)


def test_metadata_round_trip_and_replacement(tiny):
    from mobile_export import tflite
    from tfalign.runtime import read_tflite_metadata
    _, _, model = tiny
    data = tflite.convert(model)
    assert read_tflite_metadata(data) is None
    once = tflite.embed_metadata(data, b'{"v": 1}')
    twice = tflite.embed_metadata(once, b'{"v": 2}')
    assert read_tflite_metadata(once) == b'{"v": 1}'
    assert read_tflite_metadata(twice) == b'{"v": 2}'
    assert read_tflite_metadata(twice, "other") is None
    # the embedded model still runs and gives the same numbers
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    outs = []
    for blob in (data, twice):
        it = _interp(blob)
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_int8_coverage_is_zero_for_float_and_one_without_float_layers(calib):
    from mobile_export import tflite
    from tfalign._keras import keras, layers
    inp = keras.Input((32, 32, 3), name="image")
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    model = keras.Model(inp, layers.Conv2D(2, 1)(x))
    assert tflite.inspect(tflite.convert(model, "none"))["int8_coverage"] == 0.0
    full = tflite.inspect(tflite.convert(model, "int8", lambda: iter(calib)))
    assert full["int8_coverage"] == 1.0 and full["float_ops"] == []


@pytest.mark.parametrize("sampler", ["deformable", "stn"])
def test_sampling_coordinates_stay_float_in_int8(sampler):
    """Quantized to 8 bits over a map, a sampling coordinate moves in steps of range/255 (a quarter pixel on a
    64-pixel map) and its bilinear weights take a handful of values: the deformable convolution and the dense
    U-Net's STN keep their coordinate ops float, while the convolutions and gathers around them are int8."""
    from ai_edge_litert.interpreter import Interpreter

    from mobile_export import tflite
    from quantization import presets
    from tfalign import layers as tfa_layers
    from tfalign._keras import keras, layers
    from tfalign.models.dense_unet import AffineFeatureWarp
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    if sampler == "deformable":
        deform = tfa_layers.DeformableConv2D(4, name="deform")
        model = keras.Model(inp, deform(x))
        kernel, bias = deform.offset_conv.get_weights()
        deform.offset_conv.set_weights([np.random.default_rng(0).normal(0, 0.3, kernel.shape).astype(np.float32),
                                        bias])
        int8_kinds = {"CONV_2D", "GATHER", "FULLY_CONNECTED"}
    else:
        stn = AffineFeatureWarp(name="stn")
        model = keras.Model(inp, layers.Conv2D(4, 1, name="after")(stn(x)))
        kernel, bias = stn.loc.layers[-1].get_weights()  # identity at init: tilt it so the grid is not on pixels
        stn.loc.layers[-1].set_weights([kernel, bias + np.float32([0.1, 0.05, 0.02, -0.04, 0.9, 0.03])])
        int8_kinds = {"CONV_2D", "GATHER"}
    rng = np.random.default_rng(1)
    rep = lambda: ([rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)] for _ in range(4))  # noqa: E731
    it = Interpreter(model_content=tflite.convert(model, preset=presets.for_int8(rep)))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    in_scope, kinds = [], set()
    for op in it._get_ops_details():
        out = tensors[op["outputs"][0]]
        if op["op_name"] in ("QUANTIZE", "DELEGATE"):
            continue
        if "/sample_coords" in out["name"]:
            in_scope.append((op["op_name"], np.dtype(out["dtype"]).name))
        elif out["dtype"] == np.int8:
            kinds.add(op["op_name"])
    assert any(name == "FLOOR" for name, _ in in_scope)
    assert in_scope and all(dtype in ("float32", "int32") for _, dtype in in_scope), in_scope
    assert int8_kinds <= kinds, kinds
