"""Keras vs exported TFLite on real (LFPW) and synthetic faces, for every quantization mode and both test models.

Tolerances are mobile_export.conformance's: float within 1e-3 of the crop side per coordinate, quantized
exports within NME 0.02 of Keras (inter-ocular of the ground truth).
"""
import numpy as np
import pytest

from tests import export_helpers as H

MODES = ["none", "float16", "dynamic", "int8"]


def _lfpw(shared_data, n=4):
    from tfalign.data.readers import read_pts_dir
    records = read_pts_dir(str(shared_data / "lfpw" / "trainset"))
    assert len(records) >= 800
    return [records[i] for i in np.linspace(0, len(records) - 1, n).astype(int)]


def _models():
    from mobile_export.export import load_model
    loaded = load_model(None, None)  # the package default, pretrained when its weights are shipped
    _, config, tiny = H.tiny()
    return {"export_tiny": (config, tiny), "mobile_two_stage": (loaded.config, loaded.inference)}


@pytest.fixture(scope="module")
def models():
    return _models()


def _runner(tmp_path, model, config, mode, calibration):
    from mobile_export import contract, tflite
    from tfalign.runtime import LandmarkModel
    data = tflite.convert(model, mode, lambda: iter(calibration))
    path = tmp_path / f"m_{mode}.tflite"
    path.write_bytes(data)
    return LandmarkModel(str(path), contract.tflite_contract(config.input, data, {"name": "m"}))


# The default model's four modes take minutes on a shared CPU: its float/int8 parity runs by default on LFPW below.
@pytest.mark.parametrize("name", ["export_tiny", pytest.param("mobile_two_stage", marks=pytest.mark.slow)])
@pytest.mark.parametrize("mode", MODES)
def test_parity_on_synthetic_faces(tmp_path, models, name, mode):
    from mobile_export import conformance
    config, model = models[name]
    cal = conformance.crops(H.synthetic(16, config, seed=0), config.input)[0]
    runner = _runner(tmp_path, model, config, mode, cal)
    result = conformance.tflite_parity(model, runner, H.synthetic(6, config, seed=1), config.input, mode)
    assert result["passed"], result


@pytest.mark.parametrize("name", ["export_tiny", "mobile_two_stage"])
@pytest.mark.parametrize("mode", ["none", "int8"])
def test_parity_on_real_lfpw_faces(tmp_path, models, shared_data, name, mode):
    from mobile_export import conformance
    config, model = models[name]
    faces = _lfpw(shared_data, 8)
    cal = conformance.crops(faces[:4], config.input)[0]
    runner = _runner(tmp_path, model, config, mode, cal)
    result = conformance.tflite_parity(model, runner, faces[4:], config.input, mode)
    assert result["passed"], result
    assert result["faces"] == 4


def test_crops_put_the_ground_truth_where_the_model_expects_it(shared_data, models):
    from mobile_export import conformance
    config, _ = models["mobile_two_stage"]
    x, truth, mask = conformance.crops(_lfpw(shared_data, 3), config.input)
    assert x.shape == (3, config.input.height, config.input.width, config.input.channels)
    assert mask.min() == 1.0
    # tight box scaled by crop_scale: the points span 1 / crop_scale of the crop (widest side)
    span = (truth.max(1) - truth.min(1)).max(-1)
    np.testing.assert_allclose(span, 1 / config.input.crop_scale, rtol=1e-4)


def test_compare_fails_beyond_tolerance():
    from mobile_export import conformance
    from tfalign.data.synthetic import make_records
    truth = np.stack([r.points for r in make_records(3, size=64)]) / 64.0
    mask = np.ones(truth.shape[:2], np.float32)
    iod = conformance.normaliser(truth, mask, ("300w_68",))
    ok = conformance.compare(truth, truth + 0.0005, truth, mask, ("300w_68",), "none")
    bad = conformance.compare(truth, truth + 0.002, truth, mask, ("300w_68",), "none")
    assert ok["passed"] and not bad["passed"]
    shift = (0.03 * iod)[:, None, None] / np.sqrt(2)  # NME 0.03 > 0.02
    assert not conformance.compare(truth, truth + shift, truth, mask, ("300w_68",), "int8")["passed"]
    np.testing.assert_allclose(conformance.compare(truth, truth + shift, truth, mask, ("300w_68",), "int8")["nme"],
                               0.03, rtol=1e-5)
