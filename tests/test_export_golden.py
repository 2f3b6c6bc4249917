"""The golden-landmarks file shared with the apps: it still describes what the package exports."""
import json
import os

import cv2
import numpy as np
import pytest

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "landmarks_mobile_two_stage.json")


@pytest.fixture(scope="module")
def golden():
    with open(GOLDEN, encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def loaded():
    from mobile_export.export import load_model
    return load_model(None, None)


def test_golden_belongs_to_the_default_model_weights(golden, loaded):
    from mobile_export.export import weights_fingerprint
    assert golden["weights_sha256"] == weights_fingerprint(loaded.inference), (
        "tests/golden/landmarks_mobile_two_stage.json was made with other weights than the default model now has "
        f"({golden['weights']} then, {loaded.weights} now): regenerate it with `python -m mobile_export.golden`")


def test_crop_png_is_the_models_input_and_regenerates_identically(golden, loaded):
    from mobile_export.golden import golden_crop
    spec = loaded.config.input
    png = cv2.cvtColor(cv2.imread(os.path.join(os.path.dirname(GOLDEN), golden["crop_png"])), cv2.COLOR_BGR2RGB)
    assert png.shape == (spec.height, spec.width, 3)
    np.testing.assert_array_equal(png, golden_crop(spec))


@pytest.mark.parametrize("mode", ["none", "int8"])
def test_exported_model_reproduces_the_golden_points(tmp_path, golden, loaded, mode):
    from mobile_export import conformance, tflite
    from mobile_export.contract import tflite_contract
    from tfalign.runtime import LandmarkModel
    spec = loaded.config.input
    png = cv2.cvtColor(cv2.imread(os.path.join(os.path.dirname(GOLDEN), golden["crop_png"])), cv2.COLOR_BGR2RGB)
    calib = conformance.crops(conformance.synthetic_records(32, spec, 0), spec)[0]
    data = tflite.convert(loaded.inference, mode, lambda: iter(calib))
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    runner = LandmarkModel(str(path), tflite_contract(spec, data, {"name": "m"}))
    # image-level path through the contract crop, on the box whose crop is the PNG itself
    got = runner.predict(png, golden["identity_box"])
    expected = np.asarray(golden["expected"][mode]) * [spec.width, spec.height] - 0.5
    np.testing.assert_allclose(got, expected, atol=golden["tolerance"][mode] * spec.width)


def test_float_golden_agrees_with_keras(golden):
    keras_pts, tflite_pts = (np.asarray(golden["expected"][k]) for k in ("keras", "none"))
    assert np.abs(keras_pts - tflite_pts).max() <= 1e-3
