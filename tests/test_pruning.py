"""quantization.pruning: tfmot magnitude pruning to a target sparsity, fine-tuned through the trainer."""
import numpy as np
import pytest

from quantization import pruning
from tfalign import config as cfg_lib
from tfalign._keras import keras, layers
from tfalign.layers import SoftArgmax
from tfalign.models.base import resolve
from tfalign.training.runconfig import RunSettings


def _tiny():
    from tfalign.training import testing  # noqa: F401  (registers tiny_test)
    arch, config = resolve("tiny_test")
    return arch, config, arch.build(config)


def test_conv_and_dense_are_wrapped_and_other_custom_layers_survive():
    _, _, model = _tiny()
    pruned = pruning.prune_model(model, 0.5, end_step=10)
    kinds = {getattr(l, "layer", l).name: type(l).__name__ for l in pruned.layers}
    assert kinds["conv1"] == kinds["heatmaps"] == "PruneLowMagnitude"
    assert kinds["landmarks"] == "SoftArgmax"  # custom layers are reused, not wrapped
    assert isinstance(pruned.output, dict) and "landmarks" in pruned.output


def test_skip_and_bad_arguments():
    _, _, model = _tiny()
    pruned = pruning.prune_model(model, 0.5, end_step=10, skip=["heatmaps"])
    assert type(pruned.get_layer("heatmaps")).__name__ == "Conv2D"
    with pytest.raises(ValueError, match="no layer named"):
        pruning.prune_model(model, 0.5, end_step=10, skip=["nope"])
    with pytest.raises(ValueError, match="target_sparsity"):
        pruning.prune_model(model, 1.0, end_step=10)
    with pytest.raises(ValueError, match="begin_step"):
        pruning.prune_model(model, 0.5, begin_step=5, end_step=2)
    inp = keras.Input((8, 8, 2))
    no_conv = keras.Model(inp, {"landmarks": SoftArgmax()(layers.ReLU()(inp))})
    with pytest.raises(ValueError, match="no layer to prune"):
        pruning.prune_model(no_conv, 0.5, end_step=1)


def test_one_shot_reaches_the_sparsity_and_leaves_the_input_model_alone():
    _, _, model = _tiny()
    before = [w.copy() for w in model.get_weights()]
    slim = pruning.one_shot(model, 0.7)
    report = pruning.sparsity_report(slim)
    for row in report["layers"]:
        assert row["sparsity"] == pytest.approx(0.7, abs=0.01), row
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert pruning.sparsity_report(model)["total"]["sparsity"] < 0.05


def test_fine_tuning_through_the_trainer_reaches_the_target(tmp_path):
    arch, config, model = _tiny()
    steps, epochs = 4, 2
    run = RunSettings(model="tiny_test", config=cfg_lib.to_dict(config), data=["synthetic:12:mtfl_5"],
                      val=["synthetic:4:mtfl_5:1"], epochs=epochs, batch_size=4, seed=0, steps_per_epoch=steps)
    pruned, history = pruning.fine_tune(
        lambda: pruning.prune_model(pruning.copy_model(model), 0.6, end_step=steps * epochs - 2, frequency=1),
        run, str(tmp_path / "run"), progress=False)
    assert len(history["epochs"]) == epochs and (tmp_path / "run" / "best.weights.h5").exists()
    stripped = pruning.strip(pruned)
    assert not any(type(l).__name__ == "PruneLowMagnitude" for l in stripped.layers)
    report = pruning.sparsity_report(stripped)
    assert report["total"]["sparsity"] == pytest.approx(0.6, abs=0.02)
    assert "conv2" in pruning.format_report(report)


def test_fine_tune_wants_a_builder(tmp_path):
    _, _, model = _tiny()
    with pytest.raises(ValueError, match="callable that builds the model"):
        pruning.fine_tune(model, None, str(tmp_path))


def test_gzip_size_shows_sparsity():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=20000).astype(np.float32)
    sparse = dense * (rng.random(20000) > 0.7)
    assert pruning.gzip_size(sparse.tobytes()) < 0.6 * pruning.gzip_size(dense.tobytes())


def test_gzip_size_of_a_file(tmp_path):
    path = tmp_path / "m.bin"
    path.write_bytes(b"\0" * 10000)
    assert pruning.gzip_size(str(path)) < 200


def _custom_model():
    from tfalign.layers import DeformableConv2D
    inp = keras.Input((8, 8, 4))
    x = layers.SeparableConv2D(8, 3, padding="same", name="sep")(inp)
    x = DeformableConv2D(6, name="deform")(x)
    model = keras.Model(inp, {"out": layers.Conv2D(2, 1, name="head")(x)})
    rng = np.random.default_rng(0)  # offsets start at zero: give every kernel distinct non-zero values
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def test_separable_and_custom_layers_with_prunable_weights_are_pruned():
    model = _custom_model()
    pruned = pruning.prune_model(model, 0.5, end_step=10)
    assert {l.layer.name for l in pruned.layers if type(l).__name__ == "PruneLowMagnitude"} == {"sep", "deform", "head"}
    slim = pruning.one_shot(model, 0.6)
    rows = {r["layer"]: r for r in pruning.sparsity_report(slim)["layers"]}
    deform = model.get_layer("deform")
    assert rows["deform"]["params"] == deform.combine.kernel.shape.num_elements() + \
        deform.offset_conv.kernel.shape.num_elements()
    assert rows["sep"]["params"] == model.get_layer("sep").pointwise_kernel.shape.num_elements()
    for row in rows.values():
        assert row["sparsity"] == pytest.approx(0.6, abs=0.02), row
    assert type(slim.get_layer("deform")).__name__ == "DeformableConv2D"


def test_a_wrapped_custom_layer_reaches_the_target_while_training():
    """The wrapper's training path (mask updates between steps) runs through the custom layer's own call."""
    model = _custom_model()
    pruned = pruning.prune_model(model, 0.5, end_step=3, frequency=1)
    pruned.compile(optimizer=keras.optimizers.SGD(1e-3), loss={"out": "mse"})
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 4)).astype(np.float32)
    pruned.fit(x, {"out": np.zeros((4, 8, 8, 2), np.float32)}, batch_size=2, epochs=3, verbose=0,
               callbacks=pruning.pruning_callbacks())
    rows = {r["layer"]: r for r in pruning.sparsity_report(pruning.strip(pruned))["layers"]}
    assert rows["deform"]["sparsity"] == pytest.approx(0.5, abs=0.02)
