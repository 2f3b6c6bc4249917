"""quantization.distill: the trained model teaches its channel-pruned copy through the shared trainer."""
import numpy as np
import pytest

from quantization import channel_pruning, distill, pruning
from tfalign import config as cfg_lib
from tfalign._keras import keras, layers, tf
from tfalign.models.base import resolve
from tfalign.training.runconfig import RunSettings


def _tiny():
    from tfalign.training import testing  # noqa: F401  (registers tiny_test)
    arch, config = resolve("tiny_test")
    keras.utils.set_random_seed(0)
    return arch, config, arch.build(config)


def _image(seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)


def test_the_distilled_model_returns_the_students_outputs_and_a_loss_that_is_zero_for_an_exact_copy():
    _, _, teacher = _tiny()
    x = _image()
    same = distill.with_teacher(pruning.copy_model(teacher), pruning.copy_model(teacher), {"landmarks": 100.0})
    out = same(x, training=True)
    np.testing.assert_allclose(out["landmarks"].numpy(), teacher(x)["landmarks"].numpy(), atol=1e-6)
    assert float(same.losses[0]) == pytest.approx(0.0, abs=1e-10)
    # A pruned student disagrees with its teacher: the term is the weighted mean squared point distance.
    slim, _ = channel_pruning.prune_channels(teacher, 0.5, divisor=1, min_channels=2)
    model = distill.with_teacher(slim, pruning.copy_model(teacher), {"landmarks": 100.0})
    s, t = slim(x)["landmarks"].numpy(), teacher(x)["landmarks"].numpy()
    model(x, training=True)
    want = 100.0 * np.mean(np.sum((s - t) ** 2, -1))
    assert float(model.losses[0]) == pytest.approx(want, rel=1e-4) and want > 0


def test_only_the_student_trains_and_comes_back_out_under_its_own_name():
    _, _, teacher = _tiny()
    slim, _ = channel_pruning.prune_channels(teacher, 0.5, divisor=1, min_channels=2)
    name = slim.name
    model = distill.with_teacher(slim, pruning.copy_model(teacher), {"landmarks": 10.0})
    assert {id(v) for v in model.trainable_variables} == {id(v) for v in slim.trainable_variables}
    with tf.GradientTape() as tape:
        model(_image(), training=True)
        loss = tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    assert any(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
    back = distill.student_of(model)
    assert back is slim and back.name == name
    assert distill.student_of(teacher) is teacher


def test_bad_outputs_and_weights_are_named():
    _, _, teacher = _tiny()
    with pytest.raises(ValueError, match="weights is empty"):
        distill.with_teacher(pruning.copy_model(teacher), pruning.copy_model(teacher), {})
    with pytest.raises(ValueError, match="'coarse' is not an output of both"):
        distill.with_teacher(pruning.copy_model(teacher), pruning.copy_model(teacher), {"coarse": 1.0})
    with pytest.raises(ValueError, match="must be > 0"):
        distill.with_teacher(pruning.copy_model(teacher), pruning.copy_model(teacher), {"landmarks": 0.0})
    inp = keras.Input((32, 32, 3))
    other = keras.Model(inp, {"landmarks": layers.Reshape((3, 2))(layers.Dense(6)(layers.Flatten()(inp)))})
    with pytest.raises(ValueError, match="shape"):
        distill.with_teacher(other, pruning.copy_model(teacher), {"landmarks": 1.0})


def test_fine_tuning_with_a_teacher_goes_through_the_trainer(tmp_path):
    _, config, teacher = _tiny()
    slim, _ = channel_pruning.prune_channels(teacher, 0.5, divisor=1, min_channels=2)
    run = RunSettings(model="tiny_test", config=cfg_lib.to_dict(config), data=["synthetic:12:mtfl_5"],
                      val=["synthetic:4:mtfl_5:1"], epochs=2, batch_size=4, seed=0, steps_per_epoch=3)
    before = [w.copy() for w in slim.get_weights()]
    trained, history = pruning.fine_tune(
        lambda: distill.with_teacher(pruning.copy_model(slim), pruning.copy_model(teacher), {"landmarks": 10.0}),
        run, str(tmp_path / "run"), progress=False)
    student = distill.student_of(trained)
    assert len(history["epochs"]) == 2 and (tmp_path / "run" / "best.weights.h5").exists()
    assert [w.shape for w in student.get_weights()] == [w.shape for w in before]
    assert any(not np.allclose(a, b) for a, b in zip(student.get_weights(), before))
    # The teacher inside was not trained.
    inner = trained.get_layer(distill.TEACHER)
    for a, b in zip(inner.get_weights(), teacher.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_builder_distils_every_point_output_or_just_copies():
    _, _, teacher = _tiny()
    build, weights = distill.builder(teacher, teacher, 0.0)
    assert weights == {} and build().name == teacher.name
    build, weights = distill.builder(teacher, teacher, 5.0)
    assert weights == {"landmarks": 5.0}
    assert distill.TEACHER in [layer.name for layer in build().layers]
    inp = keras.Input((32, 32, 3))
    maps_only = keras.Model(inp, {"heatmaps": layers.Conv2D(2, 1)(inp)})
    with pytest.raises(ValueError, match="no \\[B, N, 2\\] point output"):
        distill.builder(maps_only, maps_only, 1.0)


def _argmax_model():
    """Maps and points decoded from them by an argmax, like the dense U-Net."""
    from tfalign.models.dense_unet import HeatmapDecode
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    maps = layers.Conv2D(3, 3, padding="same", name="maps")(inp)
    return keras.Model(inp, {"heatmaps": maps, "landmarks": HeatmapDecode(name="decode")(maps)})


def test_points_decoded_by_an_argmax_are_refused_and_their_maps_are_distilled_instead():
    model = _argmax_model()
    assert distill.gradient_free(model, ["heatmaps", "landmarks"]) == ["landmarks"]
    _, _, tiny = _tiny()  # soft-argmax points do pass a gradient
    assert distill.gradient_free(tiny, ["landmarks"]) == []
    with pytest.raises(ValueError,
                       match="'landmarks' of model .* passes no gradient.*its outputs: heatmaps, landmarks"):
        distill.builder(model, model, 1.0)
    with pytest.raises(ValueError, match="'maps' not an output of model"):
        distill.builder(model, model, 1.0, outputs=["maps"])
    build, weights = distill.builder(model, model, 2.0, outputs=["heatmaps"])
    assert weights == {"heatmaps": 2.0}
    wrapped = build()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    wrapped(x)
    assert float(tf.add_n(wrapped.losses)) == pytest.approx(0.0, abs=1e-10)  # an exact copy matches its teacher
    student = distill.inner_student(wrapped)
    kernel = student.get_layer("maps").kernel
    kernel.assign(kernel + 0.1)
    with tf.GradientTape() as tape:
        wrapped(x)
        loss = tf.add_n(wrapped.losses)
    assert float(loss) > 0
    grad = tape.gradient(loss, kernel)
    assert grad is not None and np.abs(grad.numpy()).max() > 0  # the map term trains the student


def test_the_architecture_decides_how_an_output_is_compared():
    from tfalign.models.dense_unet import DenseUNet
    model = _argmax_model()
    match = distill.architecture_match(DenseUNet(), None)
    build, _ = distill.builder(model, model, 3.0, outputs=["heatmaps"], match=match)
    wrapped = build()
    student = distill.inner_student(wrapped)
    kernel = student.get_layer("maps").kernel
    kernel.assign(kernel + 0.1)
    x = np.random.default_rng(1).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    out = wrapped(x)
    teacher = wrapped.get_layer(distill.TEACHER)(x, training=False)
    want = 3.0 * float(DenseUNet().distill_loss(None, "heatmaps", out["heatmaps"], teacher["heatmaps"]))
    mse = 3.0 * float(tf.reduce_mean(tf.square(out["heatmaps"] - teacher["heatmaps"])))
    assert float(tf.add_n(wrapped.losses)) == pytest.approx(want, rel=1e-5) and want != pytest.approx(mse, rel=1e-2)
