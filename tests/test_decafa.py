import numpy as np
import pytest

from tfalign import config as cfg_lib
from tfalign._keras import keras, tf
from tfalign.models.base import resolve
from tfalign.models.decafa import DeCaFAConfig


def tiny(**kw):
    arch, cfg = resolve("decafa")
    spec = cfg_lib.replace(cfg.input, height=32, width=32)
    return arch, cfg_lib.replace(cfg, channels=(4, 8, 8), num_stages=kw.pop("num_stages", 2), input=spec, **kw)


def test_shapes_per_stage_and_task():
    arch, cfg = tiny(num_stages=3)
    model = arch.build(cfg)
    out = model(np.zeros((2, 32, 32, 1), np.float32))
    for s in (1, 2, 3):
        assert out[f"landmarks_stage{s}"].shape == (2, 73, 2)
    # Chained tasks: the 5-point transfer layer reads the 68-point transfer layer, not the U-net embedding.
    t5 = model.get_layer("s1_transfer1")
    assert t5.input.shape[-1] == 68
    assert model.get_layer("s1_transfer0").input.shape[-1] == 4
    pts = out["landmarks"].numpy()
    assert np.all((pts > 0) & (pts < 1))


def test_independent_tasks_read_embedding():
    arch, cfg = tiny(chained=False)
    model = arch.build(cfg)
    assert model.get_layer("s1_transfer1").input.shape[-1] == 4


@pytest.mark.parametrize("fusion,channels", [("F1", 4), ("F2", 1), ("F3", 2), ("F4", 6), ("F5", 10)])
def test_fusion_input_channels(fusion, channels):
    arch, cfg = tiny(fusion=fusion)
    model = arch.build(cfg)
    assert model.get_layer("s2_down0a_conv").input.shape[-1] == channels


def test_masked_loss_ignores_absent_markups():
    arch, cfg = tiny()
    model = arch.build(cfg)
    x = tf.random.uniform((2, 32, 32, 1), seed=1)
    pts = tf.random.uniform((2, 73, 2), seed=2)
    mask = np.zeros((2, 73), np.float32)
    mask[0, :68] = 1  # a 68-point face
    mask[1, 68:] = 1  # a 5-point face
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        tape.watch(out["landmarks"])
        loss, parts = arch.loss(cfg, out, {"points": pts, "mask": mask})
    g = tape.gradient(loss, out["landmarks"]).numpy()
    assert np.all(g[0, 68:] == 0) and np.all(g[1, :68] == 0)
    assert np.any(g[0, :68] != 0) and np.any(g[1, 68:] != 0)
    # Changing the ground truth of unannotated points changes nothing.
    pts2 = tf.tensor_scatter_nd_update(pts, [[0, 70]], [[0.9, 0.9]])
    loss2, _ = arch.loss(cfg, out, {"points": pts2, "mask": mask})
    assert float(loss2) == pytest.approx(float(loss))
    # Increasing λ: the last stage weighs 1, the first 1/2 for two stages.
    assert float(loss) == pytest.approx(0.5 * float(parts["stage1"]) + float(parts["stage2"]), rel=1e-5)


def test_serialization_round_trip(tmp_path):
    arch, cfg = tiny()
    model = arch.build(cfg)
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.models.load_model(path)
    x = np.random.rand(1, 32, 32, 1).astype(np.float32)
    np.testing.assert_allclose(model(x)["landmarks"], again(x)["landmarks"], atol=1e-6)


def test_early_exit_runs_fewer_stages():
    arch, cfg = tiny(num_stages=3)
    model = arch.build(cfg)
    full = arch.inference_model(cfg, model)
    early = arch.inference_model(cfg_lib.replace(cfg, exit_stage=1), model)
    assert early.output.shape[1:] == (68, 2) and full.output.shape[1:] == (68, 2)
    assert early.count_params() < full.count_params() / 2
    x = np.random.rand(1, 32, 32, 1).astype(np.float32)
    np.testing.assert_allclose(early(x), model(x)["landmarks_stage1"][:, :68], atol=1e-6)


def test_tflite_builtin_conversion():
    arch, cfg = tiny()
    model = arch.inference_model(cfg, arch.build(cfg))
    inp = keras.Input((32, 32, 1), batch_size=1)
    fixed = keras.Model(inp, model(inp))
    conv = tf.lite.TFLiteConverter.from_keras_model(fixed)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    blob = conv.convert()
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=blob)
    it.allocate_tensors()
    x = np.random.rand(1, 32, 32, 1).astype(np.float32)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, model(x), atol=1e-4)
    ops = {d["op_name"] for d in it._get_ops_details()}
    assert not any(o.startswith("Flex") or o == "CUSTOM" for o in ops)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="decreasing landmark count"):
        DeCaFAConfig(input=DeCaFAConfig().input.__class__(schemes=("mtfl_5", "300w_68")))
    with pytest.raises(ValueError, match="fusion"):
        DeCaFAConfig(fusion="F9")
    with pytest.raises(ValueError, match="num_stages"):
        DeCaFAConfig(num_stages=5)
    with pytest.raises(ValueError, match="softmax_temperature"):
        DeCaFAConfig(softmax_temperature=0.0)


def test_softmax_temperature_is_a_rescaled_transfer_layer():
    # exp(T/τ): the same maps as τ = 1 with the 68-point transfer layer's weights divided by τ.
    arch, cfg = tiny(num_stages=1, softmax_temperature=0.25)
    hot = arch.build(cfg)
    plain = arch.build(cfg_lib.replace(cfg, softmax_temperature=1.0))
    plain.set_weights(hot.get_weights())
    kernel, bias = hot.get_layer("s1_transfer0").get_weights()
    plain.get_layer("s1_transfer0").set_weights([kernel / 0.25, bias / 0.25])
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 1)).astype(np.float32)
    a = hot(x)["landmarks"].numpy()[:, :68]
    b = plain(x)["landmarks"].numpy()[:, :68]
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(a - arch.build(cfg_lib.replace(cfg, softmax_temperature=1.0))(x)["landmarks"].numpy()[:, :68]).max() > 1e-4


def test_export_contract_names_the_exported_markup_only():
    # Training predicts 68 + 5 points; the inference model (and so the .tflite/.mlpackage contract) only the 68.
    from mobile_export.contract import output_schemes, scheme_block
    schemes = DeCaFAConfig().input.schemes
    assert output_schemes(schemes, 68) == ("300w_68",)
    assert scheme_block(output_schemes(schemes, 68))["num_points"] == 68
    assert output_schemes(schemes, 73) == ("300w_68", "mtfl_5")


def test_inference_model_works_on_qat_and_stripped_pruned_copies():
    """The exported markup is taken from the model's outputs: QAT renames layers, strip_pruning shares them."""
    from quantization import pruning, qat
    arch, config = tiny()
    assert config.input.schemes == ("300w_68", "mtfl_5")
    model = arch.build(config)
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 1)).astype(np.float32)
    want = model(x)["landmarks"].numpy()[:, :68]
    np.testing.assert_allclose(arch.inference_model(config, model)(x).numpy(), want, atol=1e-6)
    stripped = pruning.strip(pruning.prune_model(pruning.copy_model(model), 0.5, end_step=10))
    assert arch.inference_model(config, stripped)(x).shape == (1, 68, 2)
    assert arch.inference_model(config, qat.quantize_model(model))(x).shape == (1, 68, 2)
