"""quantization.presets and quantization.calibration: validated presets, converter settings, representative faces."""
import numpy as np
import pytest

from quantization import calibration, presets
from tfalign.models.base import InputSpec


def _rep():
    return iter([np.zeros((1, 8, 8, 3), np.float32)])


def test_named_constructors_set_their_mode():
    assert presets.for_float16().mode == "float16"
    assert presets.for_dynamic().mode == "dynamic"
    assert presets.for_float32().mode == "float32" and not presets.for_float32().quantized
    p = presets.for_int8(_rep, io_dtype="uint8")
    assert (p.mode, p.io_dtype, p.representative) == ("int8", "uint8", _rep)
    assert presets.for_qat().io_dtype == "float32" and presets.for_qat().representative is None
    assert presets.for_qat(representative=_rep).representative is _rep  # calibrates what QAT left float


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="int8"), "needs calibration data"),
    (dict(mode="int8", representative=[1, 2]), "must be a callable"),
    (dict(mode="float16", representative=_rep), "only applies to int8 and qat"),
    (dict(mode="dynamic", representative=_rep), "only applies to int8 and qat"),
    (dict(mode="qat", representative=[1, 2]), "must be a callable"),
    (dict(mode="dynamic", io_dtype="int8"), "needs an integer model"),
    (dict(mode="int4"), "unknown 'int4'"),
    (dict(mode="qat", io_dtype="int16"), "io_dtype: unknown 'int16'"),
])
def test_invalid_combinations_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        presets.QuantizationPreset(**kwargs)


def test_for_int8_refuses_float_io():
    with pytest.raises(ValueError, match="io_dtype"):
        presets.for_int8(_rep, io_dtype="float32")


def test_from_name_maps_export_modes():
    assert presets.from_name("none").mode == "float32"
    assert presets.from_name("int8", _rep).io_dtype == "int8"
    with pytest.raises(ValueError, match="--quantize: unknown mode 'int3'"):
        presets.from_name("int3")


class _FakeConverter:
    class target_spec:  # noqa: N801 - mimics the converter's attribute
        supported_ops = None
        supported_types = []

    optimizations = []
    representative_dataset = None


def test_configure_sets_converter_fields():
    from tfalign._keras import tf
    c = _FakeConverter()
    c.target_spec = type("T", (), {"supported_ops": None, "supported_types": []})()
    presets.for_float16().configure(c, [1, 8, 8, 3])
    assert c.optimizations == [tf.lite.Optimize.DEFAULT] and c.target_spec.supported_types == [tf.float16]
    c = _FakeConverter()
    c.target_spec = type("T", (), {"supported_ops": None, "supported_types": []})()
    presets.for_int8(lambda: iter([np.ones((8, 8, 3), np.float32)])).configure(c, [1, 8, 8, 3])
    assert tf.lite.OpsSet.TFLITE_BUILTINS_INT8 in c.target_spec.supported_ops
    batches = list(c.representative_dataset())
    assert len(batches) == 1 and batches[0][0].shape == (1, 8, 8, 3)  # reshaped to the static batch-1 input
    c = _FakeConverter()
    c.target_spec = type("T", (), {"supported_ops": None, "supported_types": []})()
    presets.for_float32().configure(c, [1, 8, 8, 3])
    assert c.optimizations == [] and c.representative_dataset is None


def test_synthetic_calibration_crops_are_normalised_model_inputs():
    spec = InputSpec(height=32, width=32, channels=3)
    crops = calibration.calibration_crops(spec, None, count=3, seed=0)
    assert crops.shape == (3, 32, 32, 3) and crops.dtype == np.float32
    assert -1.0 - 1e-6 <= crops.min() and crops.max() <= 1.0 + 1e-6 and crops.std() > 0.05
    rep = calibration.representative_dataset(spec, None, count=3)
    first, second = list(rep()), list(rep())
    assert len(first) == 3 and first[0].shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(first[1], second[1])  # the converter may iterate twice: same faces


def test_calibration_errors_name_the_argument():
    spec = InputSpec(height=32, width=32)
    with pytest.raises(ValueError, match="count"):
        calibration.calibration_records(spec, None, count=0)
    with pytest.raises(ValueError, match="calibration data nosuch:x"):
        calibration.calibration_records(spec, "nosuch:x", count=2)


def test_real_faces_when_a_spec_is_given(shared_data):
    spec = InputSpec(height=32, width=32)
    recs = calibration.calibration_records(spec, f"300w:{shared_data}/lfpw/trainset#train", count=4, seed=0)
    assert len(recs) == 4 and all(r.scheme == "300w_68" for r in recs)


def test_int8_export_through_the_preset_is_integer():
    from mobile_export import tflite
    from tfalign._keras import keras, layers
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    model = keras.Model(inp, layers.Conv2D(2, 1)(x))
    rep = lambda: iter(np.random.default_rng(0).normal(size=(8, 1, 16, 16, 3)).astype(np.float32))  # noqa: E731
    data = tflite.convert(model, preset=presets.for_int8(rep))
    info = tflite.inspect(data)
    assert info["int8_coverage"] == 1.0 and info["ops"]["CONV_2D"] == 2
    assert tflite.inspect(tflite.convert(model, preset=presets.for_float32()))["int8_coverage"] == 0.0
