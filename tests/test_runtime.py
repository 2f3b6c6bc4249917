"""tfalign.runtime: runs a .tflite from its contract alone; the crop/decoding math is checked independently."""
import json
import os

import numpy as np
import pytest

from tests import export_helpers as H

POINTS = np.array([[0.25, 0.5], [0.75, 0.125], [0.5, 0.9]], np.float32)  # what the fixed model outputs


def _fixed_model(height=24, width=16, channels=3):
    """A model whose landmark output ignores the image: a known answer to decode."""
    from tfalign._keras import keras, layers

    inp = keras.Input((height, width, channels), name="image")
    x = layers.GlobalAveragePooling2D()(inp)
    x = layers.Dense(POINTS.size, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(
        POINTS.reshape(-1)), name="points")(x)
    return keras.Model(inp, layers.Reshape((3, 2))(x))


def _export(tmp_path, model, spec, mode="none"):
    from mobile_export import contract as contract_lib, tflite
    from tfalign.io import atomic_write, atomic_write_json
    from tfalign.runtime import contract_path_for

    rng = np.random.default_rng(0)
    cal = [rng.uniform(-1, 1, model.inputs[0].shape[1:]).astype(np.float32) for _ in range(4)]
    data = tflite.convert(model, mode, lambda: iter(cal))
    contract = contract_lib.tflite_contract(spec, data, {"name": "fixed"})
    path = str(tmp_path / f"fixed_{mode}.tflite")
    atomic_write(path, data)
    atomic_write_json(contract_path_for(path), contract)
    return path, contract


def _spec(**kw):
    from tfalign.models.base import InputSpec
    base = dict(height=24, width=16, channels=3, crop_scale=1.5, shift_x=0.1, shift_y=-0.05, schemes=("mtfl_5",))
    base.update(kw)
    return InputSpec(**base)


def _expected_image_points(box, spec):
    # independent of tfalign.data.geometry: side = scale * max(w, h); centre = box centre + shift * side;
    # u = 0 at the crop's left edge, 1 at its right edge (non-square input: x and y scale separately)
    x, y, w, h = box
    side = spec.crop_scale * max(w, h)
    cx, cy = x + w / 2 + spec.shift_x * side, y + h / 2 + spec.shift_y * side
    return np.stack([cx - side / 2 + POINTS[:, 0] * side, cy - side / 2 + POINTS[:, 1] * side], -1)


@pytest.fixture
def mtfl3(monkeypatch):
    # a 3-point scheme so the fixed model has a markup to declare
    from tfalign import schemes
    s = schemes.LandmarkScheme(name="test_3", num_points=3, point_names=("a", "b", "c"), groups={},
                               flip_permutation=(0, 1, 2), norm_pairs={})
    monkeypatch.setitem(schemes._SCHEMES, "test_3", s)
    return "test_3"


@pytest.mark.parametrize("mode", ["none", "int8"])
def test_points_are_mapped_back_to_the_image(tmp_path, mtfl3, mode):
    from tfalign.runtime import LandmarkModel
    spec = _spec(schemes=(mtfl3,))
    path, contract = _export(tmp_path, _fixed_model(), spec, mode)
    runner = LandmarkModel(path)
    image = np.random.default_rng(1).integers(0, 255, (120, 100, 3), dtype=np.uint8)
    box = (30.0, 40.0, 36.0, 30.0)
    got = runner.predict(image, box)
    tol = 1e-3 if mode == "none" else 0.01 * 1.5 * 36  # int8 output grid: ~1/255 of the crop
    np.testing.assert_allclose(got, _expected_image_points(box, spec), atol=tol)


def test_center_origin_is_decoded_half_a_pixel_apart(tmp_path, mtfl3):
    from tfalign.runtime import LandmarkModel
    spec = _spec(schemes=(mtfl3,))
    path, contract = _export(tmp_path, _fixed_model(), spec)
    box = (30.0, 40.0, 36.0, 30.0)
    image = np.zeros((100, 100, 3), np.uint8)
    edge = LandmarkModel(path).predict(image, box)
    contract["outputs"][0]["origin"] = "center"
    center = LandmarkModel(path, contract).predict(image, box)
    side = 1.5 * 36
    np.testing.assert_allclose(center - edge, np.tile([[side / 16 / 2, side / 24 / 2]], (3, 1)), atol=1e-4)


def test_quantized_input_is_quantized_per_contract(tmp_path):
    from tfalign.runtime import LandmarkModel
    arch, config, model = H.tiny()
    from mobile_export.conformance import crops
    cal = crops(H.synthetic(4, config), config.input)[0]
    from mobile_export import contract as contract_lib, tflite
    for mode in ("none", "int8"):
        data = tflite.convert(model, mode, lambda: iter(cal))
        path = tmp_path / f"t_{mode}.tflite"
        path.write_bytes(data)
        (tmp_path / f"t_{mode}.contract.json").write_text(json.dumps(
            contract_lib.tflite_contract(config.input, data, {"name": "t"})))
    x = cal[0]
    ref = np.asarray(model(x[None]))[0]
    f = LandmarkModel(str(tmp_path / "t_none.tflite")).run_normalized(x)
    q = LandmarkModel(str(tmp_path / "t_int8.tflite")).run_normalized(x)
    np.testing.assert_allclose(f, ref, atol=1e-4)
    assert np.abs(q - ref).max() < 0.02
    # a wrong input scale in the contract moves the answer: the runtime really uses it
    bad = json.loads((tmp_path / "t_int8.contract.json").read_text())
    bad["input"]["scale"] *= 4
    assert np.abs(LandmarkModel(str(tmp_path / "t_int8.tflite"), bad).run_normalized(x) - q).max() > 1e-3


def test_missing_or_mismatched_contract_names_the_file(tmp_path, mtfl3):
    from tfalign.runtime import LandmarkModel
    spec = _spec(schemes=(mtfl3,))
    path, contract = _export(tmp_path, _fixed_model(), spec)
    os.unlink(path.replace(".tflite", ".contract.json"))
    with pytest.raises(ValueError, match="contract.json: model contract not found"):
        LandmarkModel(path)
    contract["input"]["height"] = 32
    with pytest.raises(ValueError, match="does not match the model"):
        LandmarkModel(path, contract)
    with pytest.raises(ValueError, match="nope.tflite: model file not found"):
        LandmarkModel(str(tmp_path / "nope.tflite"))
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    (tmp_path / "junk.contract.json").write_text(json.dumps(contract))
    with pytest.raises(ValueError, match="junk.tflite"):
        LandmarkModel(str(tmp_path / "junk.tflite"))


def test_runtime_does_not_import_tensorflow_or_the_exporter():
    import subprocess
    import sys
    code = ("import sys, tfalign.runtime as r; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'tf_keras', 'mobile_export', 'quantization')]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert res.returncode == 0, res.stdout + res.stderr
