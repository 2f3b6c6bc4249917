"""mobile_export.coreml: ML Program structure, compression and weights checked on Linux; predictions on macOS."""
import json

import numpy as np
import pytest

from tests import export_helpers as H

INFO = {"name": "export_tiny", "file": "t.mlpackage", "license": "CC-BY-NC-4.0", "training_data": "synthetic"}


@pytest.fixture(scope="module")
def tiny():
    return H.tiny()


@pytest.fixture(scope="module")
def fp16(tiny):
    from mobile_export import coreml
    _, config, model = tiny
    return coreml.convert(model, config.input, dict(INFO))


def test_ml_program_with_image_input_and_float32_landmarks(fp16, tiny):
    mlmodel, contract = fp16
    spec = mlmodel.get_spec()
    assert spec.WhichOneof("Type") == "mlProgram" and spec.specificationVersion >= 7
    (inp,) = spec.description.input
    assert inp.name == "image" and inp.type.imageType.width == 32 and inp.type.imageType.height == 32
    (out,) = spec.description.output
    assert out.name == "landmarks" and list(out.type.multiArrayType.shape) == [1, 68, 2]
    assert contract["input"]["normalization"] == "model" and contract["input"]["dtype"] == "uint8"
    assert contract["model"]["format"] == "mlpackage"


def test_image_type_applies_the_contract_normalisation(fp16):
    mlmodel, contract = fp16
    prog_ops = {op.name: op for op in __import__("mobile_export.coreml", fromlist=["x"])._program_ops(mlmodel)}
    scale = [op for name, op in prog_ops.items() if name.endswith("__scaled___y_0")]
    bias = [op for name, op in prog_ops.items() if name.endswith("__biased___y_0")]
    assert scale and bias
    assert float(scale[0].outputs[0].val) == pytest.approx(1 / contract["input"]["std"])
    np.testing.assert_allclose(np.asarray(bias[0].outputs[0].val).reshape(-1),
                               -contract["input"]["mean"] / contract["input"]["std"], rtol=1e-6)


def test_user_metadata_holds_the_contract_license_and_data(fp16):
    mlmodel, contract = fp16
    meta = mlmodel.user_defined_metadata
    assert json.loads(meta["tfalign_contract"]) == contract
    assert meta["license"] == "CC-BY-NC-4.0" and meta["training_data"] == "synthetic"
    assert meta["scheme"] == "300w_68"


def test_verify_finds_every_keras_kernel(fp16, tiny):
    from mobile_export import coreml
    mlmodel, contract = fp16
    _, _, model = tiny
    report = coreml.verify(mlmodel, model, contract)
    assert report["weights_checked"] == 2 and report["weights_max_rel_err"] < 2e-3
    assert report["coreml_ops"]["conv"] == 2 and report["coreml_ops"]["softmax"] == 1


def test_verify_detects_weights_that_differ_from_keras(fp16):
    from mobile_export import coreml
    mlmodel, contract = fp16
    _, _, other = H.tiny()
    w = other.get_weights()
    w[0] = w[0] + 0.05 * np.sign(w[0])
    other.set_weights(w)
    with pytest.raises(ValueError, match="not found among the CoreML weights"):
        coreml.verify(mlmodel, other, contract)


def test_verify_detects_a_contract_that_disagrees(fp16, tiny):
    from mobile_export import coreml
    mlmodel, contract = fp16
    bad = json.loads(json.dumps(contract))
    bad["input"]["height"] = 64
    with pytest.raises(ValueError, match="disagrees with the contract"):
        coreml.verify(mlmodel, tiny[2], bad)


@pytest.mark.parametrize("quantize, palettize, op", [("int8", None, "constexpr_affine_dequantize"),
                                                     ("none", 6, "constexpr_lut_to_dense")])
def test_weight_compression_is_applied_and_still_matches_keras(tiny, quantize, palettize, op):
    from mobile_export import coreml
    _, config, model = tiny
    mlmodel, contract = coreml.convert(model, config.input, dict(INFO), quantize=quantize, palettize=palettize)
    report = coreml.verify(mlmodel, model, contract, palettize)
    assert op in report["weight_compression"]
    assert report["weights_max_rel_err"] <= report["weights_tolerance"]


def test_gray_models_get_a_grayscale_image_input():
    from mobile_export import coreml
    from tfalign.config import replace
    from tfalign.models.base import resolve
    arch, config = resolve(H.NAME)
    config = replace(config, **{"input.channels": 1})
    model = arch.inference_model(config, arch.build(config))
    mlmodel, contract = coreml.convert(model, config.input, dict(INFO))
    img = mlmodel.get_spec().description.input[0].type.imageType
    assert img.colorSpace == img.GRAYSCALE and contract["input"]["color"] == "GRAY"


def test_bad_compression_arguments():
    from mobile_export import coreml
    _, config, model = H.tiny()
    with pytest.raises(ValueError, match="--palettize"):
        coreml.convert(model, config.input, dict(INFO), palettize=3)
    with pytest.raises(ValueError, match="alternatives"):
        coreml.convert(model, config.input, dict(INFO), quantize="int8", palettize=4)


@pytest.mark.macos
def test_coreml_predictions_match_keras_on_macos(fp16, tiny, tmp_path):
    from mobile_export import coreml
    _, config, model = tiny
    if not coreml.can_predict():
        pytest.skip("CoreML predicts on macOS only")
    mlmodel, _ = fp16
    path = str(tmp_path / "t.mlpackage")
    mlmodel.save(path)
    result = coreml.predict_parity(path, model, H.synthetic(4, config, seed=3), config.input, "none")
    assert result["passed"], result


def test_weight_match_accepts_broadcast_layout_and_rejects_other_values():
    # Pose-Tree-MoE's expert biases [E, O] reach CoreML as [E, 1, O] constants: same weights, other layout.
    import numpy as np

    from mobile_export.coreml import _match
    k = np.random.RandomState(0).rand(4, 6).astype(np.float32)
    assert _match(k, [k.reshape(4, 1, 6)])[0] == 0.0
    assert _match(k, [np.random.RandomState(1).rand(4, 1, 6)])[0] > 0.1


@pytest.fixture(scope="module")
def compressed(tiny):
    from mobile_export import coreml
    _, config, model = tiny
    return {name: coreml.convert(model, config.input, dict(INFO), quantize=q, palettize=p)
            for name, q, p in (("int8", "int8", None), ("palette4", "none", 4), ("palette2", "none", 2))}


def _altered(model, how):
    from tfalign._keras import keras
    other = keras.models.clone_model(model)
    w = [x.copy() for x in model.get_weights()]
    k = w[0]
    if how == "shuffled":
        w[0] = np.random.RandomState(0).permutation(k.ravel()).reshape(k.shape)
    else:  # perturbed by a fifth of the kernel's range: far outside any palette cell of the true weights
        w[0] = k + 0.2 * np.abs(k).max() * np.random.RandomState(1).choice([-1.0, 1.0], k.shape)
    other.set_weights(w)
    return other


@pytest.mark.parametrize("name", ["int8", "palette4", "palette2"])
def test_compressed_weights_are_checked_on_their_own_grid(compressed, tiny, name):
    from mobile_export import coreml
    mlmodel, contract = compressed[name]
    report = coreml.verify(mlmodel, tiny[2], contract)
    assert report["weights_check"].startswith("nearest value") and report["weights_max_rel_err"] <= 1e-2


@pytest.mark.parametrize("name", ["int8", "palette4", "palette2"])
@pytest.mark.parametrize("how", ["shuffled", "perturbed"])
def test_compressed_weight_check_fails_on_wrong_weights(compressed, tiny, name, how):
    from mobile_export import coreml
    mlmodel, contract = compressed[name]
    with pytest.raises(ValueError, match="beyond the quantization grid"):
        coreml.verify(mlmodel, _altered(tiny[2], how), contract)


def test_grid_excess_is_zero_for_nearest_palette_entries_only():
    from mobile_export.coreml import _grid_excess
    lut = np.array([-1.0, 0.0, 0.5, 2.0])
    target = np.array([[-0.9, 0.1, 0.3, 1.9, 0.7]])
    nearest = lut[np.abs(target[..., None] - lut).argmin(-1)]
    assert np.all(_grid_excess(target, nearest) == 0)
    wrong = nearest.copy()
    wrong[0, 2] = 0.0  # 0.3 is nearer 0.5 than 0.0
    excess = _grid_excess(target, wrong)
    assert excess[0, 2] == pytest.approx(0.3 - 0.2) and np.all(np.delete(excess, 2) == 0)
