import numpy as np
import pytest

from tfalign import config as cfg_lib
from tfalign._keras import keras, tf
from tfalign.models.base import resolve
from tfalign.models.pose_tree_moe import (ExpertRegressors, MoEGate, PoseTreeMoEConfig, mean_shape,
                                          tree_leaf_probabilities)


def numpy_tree(decisions, depth):
    """Leaf probabilities by walking each leaf's root-to-leaf path (eq. 10), independent of the TF code."""
    out = np.zeros((decisions.shape[0], 2 ** depth))
    for leaf in range(2 ** depth):
        node, p = 0, np.ones(decisions.shape[0])
        for level in reversed(range(depth)):
            right = (leaf >> level) & 1
            p = p * (1 - decisions[:, node] if right else decisions[:, node])
            node = 2 * node + 1 + right
        out[:, leaf] = p
    return out


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_tree_leaves_sum_to_one_and_match_numpy(depth):
    d = np.random.RandomState(depth).uniform(size=(5, 2 ** depth - 1)).astype(np.float32)
    got = tree_leaf_probabilities(tf.constant(d), depth).numpy()
    np.testing.assert_allclose(got, numpy_tree(d, depth), atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", ["tree", "softmax", "average"])
def test_gates_are_distributions(kind):
    g = MoEGate(8, kind)(tf.random.normal((4, 3), seed=3)).numpy()
    assert g.shape == (4, 8)
    np.testing.assert_allclose(g.sum(-1), 1.0, atol=1e-5)
    assert np.all(g >= 0)


def test_top_k_all_equals_full_mixture_and_top1_is_the_best_expert():
    feats = tf.random.normal((3, 20), seed=1)
    gate = MoEGate(16, "tree")(feats)
    full = ExpertRegressors(16, 8, 6, top_k=0)
    out_full = full([feats, gate])
    every = ExpertRegressors(16, 8, 6, top_k=16)
    every([feats, gate])
    every.set_weights(full.get_weights())
    np.testing.assert_allclose(every([feats, gate]), out_full, atol=1e-5)
    one = ExpertRegressors(16, 8, 6, top_k=1)
    one([feats, gate])
    one.set_weights(full.get_weights())
    # k = 1 equals the single expert with the largest gate value, with weight 1.
    best = np.argmax(gate.numpy(), -1)
    onehot = tf.one_hot(best, 16)
    np.testing.assert_allclose(one([feats, gate]), full([feats, onehot]), atol=1e-5)


def tiny_config(**kw):
    arch, cfg = resolve("pose_tree_moe")
    spec = cfg_lib.replace(cfg.input, height=40, width=40)
    base = dict(num_stages=2, patch_size=8, representation_experts=2, regression_experts=4, regression_hidden=8,
                input=spec)
    base.update(kw)
    return arch, cfg_lib.replace(cfg, **base)


def test_forward_backward_and_masked_pose_loss():
    arch, cfg = tiny_config()
    model = arch.build(cfg)
    x = tf.random.uniform((2, 40, 40, 1), seed=0)
    batch = {"points": tf.random.uniform((2, 68, 2), seed=1), "mask": tf.ones((2, 68)),
             "pose": tf.zeros((2, 3)), "pose_mask": tf.constant([1.0, 0.0])}
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss, parts = arch.loss(cfg, out, batch)
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    assert set(parts) == {"stage1", "stage2", "pose"}
    err = np.sum(np.square(out["pose"].numpy()), -1)
    assert float(parts["pose"]) == pytest.approx(err[0], rel=1e-5)  # only the labelled face counts


def test_initial_shape_is_the_mean_shape_at_inference():
    arch, cfg = tiny_config()
    model = arch.build(cfg)
    ms = mean_shape("300w_68", cfg.input.crop_scale)
    s0 = model.get_layer("initial_shape")(np.zeros((1, 40, 40, 1), np.float32), training=False)
    np.testing.assert_allclose(s0[0], ms, atol=1e-6)
    assert 0 < ms.min() and ms.max() < 1


def test_serialization_round_trip(tmp_path):
    arch, cfg = tiny_config()
    model = arch.build(cfg)
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.models.load_model(path)
    x = np.random.rand(1, 40, 40, 1).astype(np.float32)
    np.testing.assert_allclose(model(x)["landmarks"], again(x)["landmarks"], atol=1e-5)


@pytest.mark.parametrize("top_k", [0, 2])
def test_tflite_builtin_conversion(top_k):
    arch, cfg = tiny_config(top_k=top_k)
    model = arch.inference_model(cfg, arch.build(cfg))
    inp = keras.Input((40, 40, 1), batch_size=1)
    fixed = keras.Model(inp, model(inp))
    conv = tf.lite.TFLiteConverter.from_keras_model(fixed)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=conv.convert())
    it.allocate_tensors()
    x = np.random.rand(1, 40, 40, 1).astype(np.float32)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    np.testing.assert_allclose(it.get_tensor(it.get_output_details()[0]["index"]), model(x), atol=1e-4)


def test_paper_sizes():
    arch, cfg = resolve("pose_tree_moe")
    # §3.5: roughly 18 million parameters per cascade stage.
    per_stage = (arch.build(cfg).count_params()) / cfg.num_stages
    assert 16e6 < per_stage < 20e6


def test_bad_config():
    with pytest.raises(ValueError, match="power-of-two"):
        PoseTreeMoEConfig(regression_experts=12)
    with pytest.raises(ValueError, match="gate"):
        PoseTreeMoEConfig(regression_gate="forest")
    with pytest.raises(ValueError, match="top_k"):
        PoseTreeMoEConfig(top_k=65)


def test_magnitude_pruning_reaches_the_expert_layers():
    """The experts, regressors and gates hold nearly all the weights; tfmot prunes them through
    get_prunable_weights (before, only the pose branch's Conv2D/Dense were pruned)."""
    from quantization import pruning
    arch, cfg = tiny_config()
    model = arch.build(cfg)
    slim = pruning.one_shot(model, 0.5)
    rows = {r["layer"]: r for r in pruning.sparsity_report(slim)["layers"]}
    for name in ("s1_experts", "s1_regressors", "s2_experts", "s2_regressors"):
        assert rows[name]["sparsity"] == pytest.approx(0.5, abs=0.01), rows[name]
    experts = model.get_layer("s1_experts")
    assert rows["s1_experts"]["params"] == sum(c.kernel.shape.num_elements() for c in experts.convs)
    total = pruning.sparsity_report(slim)["total"]
    assert total["params"] > 0.9 * sum(w.shape.num_elements() for w in model.trainable_weights)
    x = np.random.rand(1, 40, 40, 1).astype(np.float32)
    assert np.all(np.isfinite(slim(x)["landmarks"]))
