"""quantization.channel_pruning: whole filters removed through residual, depthwise, concat, SE and grouped layers."""
import math

import numpy as np
import pytest

from quantization import channel_pruning as cp
from tfalign import config as cfg_lib
from tfalign._keras import keras, layers
from tfalign.layers import GroupConv2D, SoftArgmax
from tfalign.models.base import InputSpec, resolve


def _conv_bn(x, f, k, name, stride=1):
    x = layers.Conv2D(f, k, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(layers.BatchNormalization(name=f"{name}_bn")(x))


def _toy(seed=0):
    """Stem, an inverted residual with SE gate (Add + Multiply ties), a concat, and a custom head."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3), name="image")
    stem = _conv_bn(inp, 16, 3, "stem", stride=2)
    h = _conv_bn(stem, 32, 1, "expand")
    h = layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = layers.BatchNormalization(name="dw_bn")(h)
    h = layers.ReLU(name="dw_relu")(h)
    gate = layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(h)
    gate = layers.Conv2D(8, 1, activation="relu", name="se_squeeze")(gate)
    gate = layers.Conv2D(32, 1, activation="sigmoid", name="se_excite")(gate)
    h = layers.Multiply(name="se_mul")([h, gate])
    h = layers.Conv2D(16, 1, use_bias=False, name="project_conv")(h)
    h = layers.BatchNormalization(name="project_bn")(h)
    x = layers.Add(name="add")([stem, h])
    side = _conv_bn(x, 24, 3, "side")
    cat = layers.Concatenate(name="cat")([x, side])
    cat = layers.BatchNormalization(name="cat_bn")(cat)
    mid = _conv_bn(cat, 16, 1, "mid")
    heat = GroupConv2D(4, 3, groups=4, name="group")(layers.Conv2D(8, 1, name="pre_group")(mid))
    model = keras.Model(inp, {"landmarks": SoftArgmax(name="landmarks")(heat), "heat": heat}, name="toy")
    # Non-trivial BN statistics, so a removed live channel would show in the outputs.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.3, m.shape), rng.uniform(0.5, 2.0, v.shape)])
    return model


def _kill(model, graph, root, channels):
    """Make ``channels`` of channel space ``root`` identically zero (filters, biases, BN γ and β)."""
    for name in graph.spaces[root].producers:
        layer = model.get_layer(name)
        w = layer.get_weights()
        w[0][..., channels] = 0.0
        if len(w) > 1:
            w[1][channels] = 0.0
        layer.set_weights(w)
    for layer in model.layers:
        if not isinstance(layer, (layers.BatchNormalization, layers.DepthwiseConv2D)):
            continue
        offset = 0
        for seg in graph.inputs_of[layer.name][0]:
            if graph.find(seg) == root:
                w = layer.get_weights()
                idx = np.asarray(channels) + offset
                if isinstance(layer, layers.BatchNormalization):
                    w[0][idx] = 0.0
                    w[1][idx] = 0.0
                elif len(w) > 1:
                    w[1][idx] = 0.0
                layer.set_weights(w)
            offset += graph.spaces[graph.find(seg)].size


@pytest.mark.parametrize("criterion", ["l1", "bn"])
def test_removing_dead_filters_preserves_outputs_exactly(criterion):
    model = _toy()
    ratio = 0.25
    graph = cp.plan(model, ratio, criterion, divisor=1, min_channels=1).graph
    killed = {}
    rng = np.random.default_rng(1)
    for root, space in graph.roots().items():
        if space.fixed or not space.producers:
            continue
        n = space.size - max(1, math.ceil(space.size * (1 - ratio)))
        killed[root] = np.sort(rng.choice(space.size, n, replace=False))
        _kill(model, graph, root, killed[root])
    assert len(killed) >= 5  # stem+residual tie, expand+excite tie, squeeze, side, mid, pre_group
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 3)).astype(np.float32)
    ref = model(x)
    plan = cp.plan(model, ratio, criterion, divisor=1, min_channels=1)
    for root, idx in killed.items():
        assert not set(idx) & set(plan.kept[root].tolist()), plan.members[root]
    slim = cp.apply(model, plan)
    out = slim(x)
    assert cp.count_params(slim) < 0.85 * cp.count_params(model)
    for key in ("landmarks", "heat"):
        np.testing.assert_allclose(out[key].numpy(), ref[key].numpy(), atol=1e-5, rtol=1e-5)


def test_tied_spaces_share_one_index_set_and_fixed_ones_stay():
    model = _toy()
    slim, plan = cp.prune_channels(model, 0.5, divisor=1, min_channels=1)
    w = {l.name: l for l in slim.layers}
    # Residual tie: stem, project and everything reading the sum have the same width.
    assert w["stem_conv"].filters == w["project_conv"].filters == 8
    # SE tie: the gate multiplies the expanded channels one for one.
    assert w["expand_conv"].filters == w["se_excite"].filters == 16
    assert w["dw"].depthwise_kernel.shape[2] == 16 and w["se_squeeze"].filters == 4
    # Concat: mid reads the kept channels of both inputs.
    assert w["mid_conv"].kernel.shape[2] == 8 + w["side_conv"].filters
    # Read by a custom layer (GroupConv2D) or a model output: never cut.
    assert w["pre_group"].filters == 8 and w["group"].filters == 4
    reasons = " ".join(plan.fixed.values())
    assert "GroupConv2D 'group'" in reasons and "model input" in reasons


def test_divisor_and_min_channels():
    model = _toy()
    plan = cp.plan(model, 0.9, divisor=8, min_channels=8)
    for root, idx in plan.kept.items():
        assert len(idx) % 8 == 0 and len(idx) >= 8 and len(idx) < plan.sizes[root]


def test_ratio_zero_is_the_same_model():
    model = _toy()
    slim, plan = cp.prune_channels(model, 0.0)
    assert plan.kept == {} and plan.summary() == "(no channel removed)"
    x = np.ones((1, 16, 16, 3), np.float32)
    np.testing.assert_allclose(slim(x)["landmarks"].numpy(), model(x)["landmarks"].numpy(), atol=1e-6)


def test_skip_and_ratios_per_layer():
    model = _toy()
    plan = cp.plan(model, 0.5, divisor=1, min_channels=1, skip=["side_conv"], ratios={"mid_conv": 0.25})
    by_member = {tuple(plan.members[r]): len(v) for r, v in plan.kept.items()}
    assert ("side_conv",) not in by_member and by_member[("mid_conv",)] == 12


@pytest.mark.parametrize("kwargs, match", [
    (dict(ratio=1.0), "ratio must be in"), (dict(ratio=0.3, criterion="l2"), "criterion"),
    (dict(ratio=0.3, skip=["nope"]), "no layer named"), (dict(ratio=0.3, divisor=0), "divisor"),
    (dict(ratio=0.3, ratios={"mid_conv": 1.5}), "ratios"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cp.plan(_toy(), **kwargs)


def test_plan_of_another_model_is_refused():
    plan = cp.plan(_toy(), 0.3)
    with pytest.raises(ValueError, match="another model"):
        cp.apply(_toy(1), plan)


def test_shared_layer_is_left_whole():
    inp = keras.Input((8, 8, 4))
    conv = layers.Conv2D(8, 1, name="shared")
    a = conv(layers.Conv2D(4, 1, name="pre")(inp))
    b = conv(layers.MaxPooling2D(name="pool")(inp))
    model = keras.Model(inp, [layers.Conv2D(2, 1, name="o1")(a), layers.Conv2D(2, 1, name="o2")(b)])
    plan = cp.plan(model, 0.5, divisor=1, min_channels=1)
    assert all("shared" not in plan.members[r] and "pre" not in plan.members[r] for r in plan.kept)


@pytest.mark.parametrize("name, overrides", [
    ("mobile_two_stage", {}),
    ("pipnet_mbv3", {"input": InputSpec(height=64, width=64)}),  # MobileNetV3: SE gates, hard-swish TFOpLambdas
])
def test_edge_models_rebuild_with_consistent_shapes(name, overrides):
    arch, config = resolve(name)
    if overrides:
        config = cfg_lib.replace(config, **overrides)
    model = arch.build(config)
    slim, plan = cp.prune_channels(model, 0.35)
    assert plan.removed_fraction() > 0.25
    assert cp.count_params(slim) < 0.75 * cp.count_params(model)
    x = np.random.default_rng(0).normal(size=(1, config.input.height, config.input.width, 3)).astype(np.float32)
    out, ref = slim(x), model(x)
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in ref.items()}
    assert np.all(np.isfinite(out["landmarks"].numpy()))


def test_hard_swish_passes_channels_through():
    from tfalign.models.backbones import HardSigmoid, HardSwish
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    h = HardSwish(name="hs")(layers.BatchNormalization(name="bn")(layers.Conv2D(32, 1, name="expand")(inp)))
    gate = HardSigmoid(name="gate")(layers.Conv2D(32, 1, name="excite")(
        layers.GlobalAveragePooling2D(keepdims=True)(h)))
    h = layers.Multiply(name="se")([h, gate])
    model = keras.Model(inp, layers.Conv2D(4, 1, name="out")(h))
    slim, plan = cp.prune_channels(model, 0.5, divisor=1, min_channels=1)
    assert slim.get_layer("expand").filters == slim.get_layer("excite").filters == 16
    assert slim.get_layer("out").kernel.shape[2] == 16


def test_separable_convolutions_and_replicated_channels_are_cut_consistently():
    """Dense U-Net's CAB blocks: SeparableConv2D (depth multiplier m) produces, ReplicateChannels tiles."""
    from tfalign.models.dense_unet import ReplicateChannels
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    a = layers.BatchNormalization(name="a_bn")(layers.Conv2D(8, 3, padding="same", name="a")(inp))
    s = layers.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="sep")(layers.ReLU(name="r")(a))
    rep = ReplicateChannels(2, name="rep")(s)
    model = keras.Model(inp, layers.Conv2D(4, 1, name="out")(rep))
    rng = np.random.default_rng(0)
    g, b, m, v = model.get_layer("a_bn").get_weights()
    model.get_layer("a_bn").set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.3, 8), m, v])
    dead_a, dead_s = [1, 4, 6], [0, 3]
    k, bias = model.get_layer("a").get_weights()
    k[..., dead_a], bias[dead_a] = 0.0, 0.0
    model.get_layer("a").set_weights([k, bias])
    g, b, m, v = model.get_layer("a_bn").get_weights()
    g[dead_a], b[dead_a] = 0.0, 0.0
    model.get_layer("a_bn").set_weights([g, b, m, v])
    dw, pw, bias = model.get_layer("sep").get_weights()
    pw[..., dead_s], bias[dead_s] = 0.0, 0.0
    model.get_layer("sep").set_weights([dw, pw, bias])
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    plan = cp.plan(model, 0.4, divisor=1, min_channels=1)
    slim = cp.apply(model, plan)
    assert slim.get_layer("a").filters == 5 and slim.get_layer("sep").filters == 4
    assert slim.get_layer("sep").depthwise_kernel.shape[2] == 5 and slim.get_layer("sep").pointwise_kernel.shape[2] == 10
    assert slim.get_layer("out").kernel.shape[2] == 8  # the kept 4 channels, twice
    np.testing.assert_allclose(slim(x).numpy(), model(x).numpy(), atol=1e-5, rtol=1e-5)


def _fit_with(model, callbacks, steps, epochs=1):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
    y = rng.uniform(0, 1, (8, 4, 2)).astype(np.float32)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss={"landmarks": "mse"})
    model.fit(x, {"landmarks": y}, batch_size=8 // steps, epochs=epochs, callbacks=callbacks, verbose=0,
              shuffle=False)
    return x


def test_decay_schedule_is_cubic_and_validated():
    toy = _toy()
    decay = cp.ChannelDecay(cp.plan(toy, 0.5, divisor=1, min_channels=1), end_step=10, begin_step=2)
    assert [decay.scale(t) for t in (0, 2, 12, 50)] == [1.0, 1.0, 0.0, 0.0]
    assert decay.scale(6) == pytest.approx(0.5 ** 3)
    with pytest.raises(ValueError, match="begin_step < end_step"):
        cp.ChannelDecay(decay.plan, end_step=3, begin_step=3)


def test_decay_fades_only_the_removed_channels_and_the_cut_changes_nothing():
    toy = _toy()
    pl = cp.plan(toy, 0.5, criterion="bn", divisor=1, min_channels=1)
    targets = cp.decay_targets(toy, pl)
    names = {v.name.split("/")[0] for v, _, _ in targets}
    # BN γ/β carry the BN'd spaces (the stem conv is normalised away), the bare producers their own filters.
    assert {"stem_bn", "dw_bn", "cat_bn", "project_bn", "se_excite", "se_squeeze"} <= names
    assert "stem_conv" not in names
    before = {id(v): v.numpy().copy() for v, _, _ in targets}
    decay = cp.ChannelDecay(pl, end_step=4)
    x = _fit_with(toy, [decay], steps=2, epochs=2)  # 4 steps: the schedule ends, the epoch end zeroes
    removed_total = 0
    for v, idx, axis in targets:
        now = np.moveaxis(v.numpy(), axis, 0)
        np.testing.assert_array_equal(now[idx], 0.0)
        kept = np.setdiff1d(np.arange(now.shape[0]), idx)
        # Kept channels trained on: neither zeroed nor frozen at their start.
        assert np.abs(now[kept]).sum() > 0
        removed_total += len(idx)
    assert removed_total > 0
    assert any(not np.allclose(np.moveaxis(v.numpy(), a, 0)[np.setdiff1d(np.arange(v.shape[a]), i)],
                               np.moveaxis(before[id(v)], a, 0)[np.setdiff1d(np.arange(v.shape[a]), i)])
               for v, i, a in targets)
    slim = cp.apply(toy, pl.rebind(toy))
    for key in ("landmarks", "heat"):
        np.testing.assert_allclose(slim(x, training=False)[key], toy(x, training=False)[key], atol=1e-5)
    assert cp.count_params(slim) < cp.count_params(toy)


def test_decay_midway_keeps_the_scheduled_fraction():
    toy = _toy()
    pl = cp.plan(toy, 0.5, criterion="bn", divisor=1, min_channels=1)
    # Learning rate 0: only the schedule moves the weights, by s(2) = (1 - 2/8)^3 after two steps.
    targets = cp.decay_targets(toy, pl)
    start = [v.numpy().copy() for v, _, _ in targets]
    rng = np.random.default_rng(1)
    toy.compile(optimizer=keras.optimizers.SGD(0.0), loss={"landmarks": "mse"})
    toy.fit(rng.uniform(-1, 1, (3, 16, 16, 3)), {"landmarks": rng.uniform(0, 1, (3, 4, 2))}, batch_size=1,
            epochs=1, callbacks=[cp.ChannelDecay(pl, end_step=8)], verbose=0, shuffle=False)
    for (v, idx, axis), s0 in zip(targets, start):
        now, s0 = np.moveaxis(v.numpy(), axis, 0), np.moveaxis(s0, axis, 0)
        np.testing.assert_allclose(now[idx], s0[idx] * 0.75 ** 3, rtol=1e-5, atol=1e-7)
        kept = np.setdiff1d(np.arange(now.shape[0]), idx)
        np.testing.assert_allclose(now[kept], s0[kept], rtol=1e-6)


def test_prune_gradually_returns_the_cut_model_and_refuses_a_short_fine_tune():
    toy = _toy()
    pl = cp.plan(toy, 0.5, criterion="bn", divisor=1, min_channels=1)

    def train(build, callbacks, epochs=2):
        model = build()
        _fit_with(model, callbacks, steps=2, epochs=epochs)
        return model

    slim, info = cp.prune_gradually(toy, pl, train, end_step=4)
    assert info["cut_gap"] < 1e-5 and info["distill"] == {}
    assert slim.get_layer("expand_conv").filters == 16
    # The caller's model is a copy's source only: untouched.
    assert toy.get_layer("expand_conv").filters == 32 and np.all(toy.get_layer("stem_bn").gamma.numpy() != 0)
    with pytest.raises(ValueError, match="fewer than end_step"):
        cp.prune_gradually(toy, pl, lambda b, c: train(b, c, epochs=1), end_step=4)


def test_rebind_refuses_a_model_with_other_channel_spaces():
    pl = cp.plan(_toy(), 0.5, divisor=1, min_channels=1)
    other = keras.Sequential([keras.Input((16, 16, 3)), layers.Conv2D(4, 3, name="c")])
    with pytest.raises(ValueError, match="rebind"):
        pl.rebind(other)


def _experts_model(seed=0):
    from tfalign.models.pose_tree_moe import ExpertCNNs, ExpertRegressors
    keras.utils.set_random_seed(seed)
    patches = keras.Input((3, 16, 16, 2), name="patches")
    feats = ExpertCNNs(3, (4, 6, 8, 10, 5), name="experts")(patches)  # [B, 3 points, 3 experts, 5]
    h = layers.Flatten(name="flat")(feats)
    gate = layers.Dense(4, activation="softmax", name="gate")(h)
    out = ExpertRegressors(4, 12, 6, name="regressors")([h, gate])
    return keras.Model(patches, out)


def _kill_internal(model):
    """Zero the weakest filters inside each expert (different ones per expert), so removing them changes nothing."""
    experts, regressors = model.get_layer("experts"), model.get_layer("regressors")
    e = experts.num_experts
    for i, conv in enumerate(experts.convs[:-1]):
        f = experts.filters[i]
        kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
        for g in range(e):
            dead = [g * f + (g + j) % f for j in range(f // 2)]
            kernel[..., dead] = 0.0
            bias[dead] = -1.0  # relu(−1) = 0: a dead filter whatever the input
        conv.kernel.assign(kernel)
        conv.bias.assign(bias)
    w0, b0 = regressors.w0.numpy(), regressors.b0.numpy()
    h = regressors.hidden
    for g in range(regressors.num_experts):
        dead = [g * h + (2 * g + j) % h for j in range(h // 2)]
        w0[:, dead], b0[dead] = 0.0, -1.0
    regressors.w0.assign(w0)
    regressors.b0.assign(b0)


def test_expert_layers_prune_inside_and_keep_outputs_exactly():
    model = _experts_model()
    _kill_internal(model)
    slim, plan = cp.prune_channels(model, 0.5, divisor=1, min_channels=1)
    assert set(plan.internal) == {"experts", "regressors"}
    assert slim.get_layer("experts").filters == (2, 3, 4, 5, 5)  # the output features stay
    assert slim.get_layer("regressors").hidden == 6
    # Each expert kept its own live filters (they differ between experts).
    kept0 = plan.internal["experts"][0]
    assert not np.array_equal(kept0[0], kept0[1])
    x = np.random.default_rng(1).normal(size=(2, 3, 16, 16, 2)).astype(np.float32)
    np.testing.assert_allclose(slim(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert cp.count_params(slim) < 0.7 * cp.count_params(model)
    assert "internal map" in plan.summary() and 0.45 < plan.removed_fraction() < 0.55


def test_expert_layers_follow_skip_and_per_layer_ratios():
    model = _experts_model()
    plan = cp.plan(model, 0.5, divisor=1, min_channels=1, skip=["regressors"], ratios={"experts": 0.25})
    assert set(plan.internal) == {"experts"}
    assert [m.shape[1] for m in plan.internal["experts"]] == [3, 5, 6, 8]  # ceil(0.75 · (4, 6, 8, 10))


def test_pose_tree_moe_experts_are_pruned():
    arch, config = resolve("pose_tree_moe")
    config = cfg_lib.replace(config, num_stages=1, representation_experts=2, regression_experts=4,
                             regression_hidden=16, pose_backbone="lite")
    model = arch.build(config)
    slim, plan = cp.prune_channels(model, 0.35)
    assert {"s1_experts", "s1_regressors"} <= set(plan.internal)
    assert cp.count_params(slim) < cp.count_params(model)
    spec = config.input
    x = np.random.default_rng(0).uniform(-1, 1, (1, spec.height, spec.width, spec.channels)).astype(np.float32)
    assert slim(x)["landmarks"].shape == model(x)["landmarks"].shape


def _replicated_add_model():
    """CAB's merge: a C/2-channel branch, replicated twice, added to a C-channel trunk (dense U-Net, Fig. 3d)."""
    from tfalign.models.dense_unet import ReplicateChannels
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    trunk = layers.BatchNormalization(name="trunk_bn")(layers.Conv2D(8, 3, padding="same", name="trunk")(inp))
    branch = layers.SeparableConv2D(4, 3, padding="same", name="branch")(layers.ReLU(name="r")(trunk))
    merged = layers.Add(name="merge")([ReplicateChannels(2, name="rep")(branch), trunk])
    model = keras.Model(inp, layers.Conv2D(3, 1, name="out")(merged))
    rng = np.random.default_rng(0)
    g, b, m, v = model.get_layer("trunk_bn").get_weights()
    model.get_layer("trunk_bn").set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.3, 8), m, v])
    return model


def test_a_replicated_branch_added_to_a_wider_trunk_ties_the_trunk_halves():
    """Channel j of the merge is trunk[j] + branch[j mod 4]: the trunk is cut in halves, both tied to the branch,
    so a removed branch channel j takes trunk channels j and j + 4 with it and the shapes still add up."""
    model = _replicated_add_model()
    dead = 2
    k, bias = model.get_layer("trunk").get_weights()
    k[..., [dead, dead + 4]], bias[[dead, dead + 4]] = 0.0, 0.0
    model.get_layer("trunk").set_weights([k, bias])
    g, b, m, v = model.get_layer("trunk_bn").get_weights()
    g[[dead, dead + 4]], b[[dead, dead + 4]] = 0.0, 0.0
    model.get_layer("trunk_bn").set_weights([g, b, m, v])
    dw, pw, bias = model.get_layer("branch").get_weights()
    pw[..., dead], bias[dead] = 0.0, 0.0
    model.get_layer("branch").set_weights([dw, pw, bias])
    plan = cp.plan(model, 0.25, divisor=1, min_channels=1)
    assert not any("merge" in why for why in plan.fixed.values()), plan.fixed
    (root,) = [r for r in plan.kept if "branch" in plan.members[r]]
    assert set(plan.members[root]) == {"trunk", "branch"} and plan.kept[root].tolist() == [0, 1, 3]
    gammas = [idx for var, idx, _ in cp.decay_targets(model, plan) if var is model.get_layer("trunk_bn").gamma]
    assert [sorted(i.tolist()) for i in gammas] == [[dead, dead + 4]]  # the removed channel in both halves
    slim = cp.apply(model, plan)
    assert slim.get_layer("trunk").filters == 6 and slim.get_layer("branch").filters == 3
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(slim(x).numpy(), model(x).numpy(), atol=1e-5, rtol=1e-5)


def test_deformable_convolution_loses_dead_input_channels_and_filters_exactly():
    from tfalign.layers import DeformableConv2D
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    a = layers.Conv2D(8, 3, padding="same", name="a")(inp)
    d = DeformableConv2D(6, name="deform")(a)
    model = keras.Model(inp, layers.Conv2D(4, 1, name="out")(d))
    rng = np.random.default_rng(0)
    layer = model.get_layer("deform")
    off_k, off_b, kernel, bias = layer.get_weights()
    off_k = rng.normal(0, 0.05, off_k.shape).astype(np.float32)  # live offsets: the taps really move
    kernel[:, [1, 4]], bias[[1, 4]] = 0.0, 0.0
    layer.set_weights([off_k, off_b, kernel, bias])
    k, b = model.get_layer("a").get_weights()
    k[..., [0, 5]], b[[0, 5]] = 0.0, 0.0
    model.get_layer("a").set_weights([k, b])
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    plan = cp.plan(model, 0.25, divisor=1, min_channels=1, ratios={"deform": 0.4})  # 8 -> 6, 6 -> 4
    assert {"a", "deform"} <= {m for r in plan.kept for m in plan.members[r]}
    slim = cp.apply(model, plan)
    pruned = slim.get_layer("deform")
    assert pruned.filters == 4 and pruned.offset_conv.kernel.shape[2] == 6 and pruned.combine.kernel.shape == (54, 4)
    np.testing.assert_allclose(slim(x).numpy(), model(x).numpy(), atol=1e-5, rtol=1e-5)
    assert {v.name for v, _, _ in cp.decay_targets(model, plan)} >= {layer.combine.kernel.name}


def test_dense_unet_prunes_through_cab_blocks_and_the_deformable_convolution():
    arch, config = resolve("dense_unet_lite")
    config = cfg_lib.replace(config, input=InputSpec(height=32, width=32, schemes=("300w_68",)))
    model = arch.build(config)
    slim, plan = cp.prune_channels(model, 0.5)
    members = {m for r in plan.kept for m in plan.members[r]}
    assert {"stem_res_proj", "u1_e0_u1_sep", "u1_deform", "u2_deform", "u1_d0_proj"} <= members
    assert plan.removed_fraction() > 0.3
    assert cp.count_params(slim) < 0.6 * cp.count_params(model)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    out, ref = slim(x), model(x)
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in ref.items()}


def test_dense_unet_channels_faded_to_zero_are_cut_without_changing_the_heatmaps():
    """decay_targets reaches every carrier of a removed channel through the split (replicated) spaces, the CAB
    merges and the deformable convolution: zeroing them and cutting leaves the heatmaps as they were."""
    arch, config = resolve("dense_unet_lite")
    config = cfg_lib.replace(config, input=InputSpec(height=32, width=32, schemes=("300w_68",)))
    model = arch.build(config)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.3, m.shape), rng.uniform(0.5, 2.0, v.shape)])
    plan = cp.plan(model, 0.5, criterion="bn")
    for variable, idx, axis in cp.decay_targets(model, plan):
        value = np.moveaxis(variable.numpy(), axis, 0)
        value[idx] = 0.0
        variable.assign(np.moveaxis(value, 0, axis))
    x = rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    ref, out = model(x, training=False), cp.apply(model, plan)(x, training=False)
    for key in ("heatmaps1", "heatmaps2"):
        np.testing.assert_allclose(out[key].numpy(), ref[key].numpy(), atol=1e-4)


def _widths(model) -> dict:
    return {layer.name: layer.filters for layer in model.layers if hasattr(layer, "filters")}


def test_sensitivity_cuts_one_space_at_a_time_and_finds_the_dead_one():
    model = _toy()
    full = cp.plan(model, 0.5, divisor=1, min_channels=1)
    side = next(r for r in full.kept if full.members[r] == ["side_conv"])
    _kill(model, full.graph, side, full.removed(side))  # exactly the channels a 0.5 cut of side_conv removes
    x = np.random.default_rng(2).normal(size=(2, 16, 16, 3)).astype(np.float32)
    ref, base_widths = model(x)["heat"].numpy(), _widths(model)

    def evaluate(slim):
        changed = sorted(n for n, w in _widths(slim).items() if w != base_widths[n])
        return {"gap": float(np.max(np.abs(slim(x)["heat"].numpy() - ref))), "changed": changed}

    rows = cp.sensitivity(model, evaluate, 0.5, divisor=1, min_channels=1)
    assert len(rows) == len(full.kept)
    for row in rows:  # only the producers of the space under test lost filters
        assert row["changed"] == sorted(row["producers"]) and row["kept"] < row["size"], row
        assert row["layer"] in row["producers"]
    gaps = {row["layer"]: row["gap"] for row in rows}
    assert gaps["side_conv"] < 1e-5  # its removed channels were dead
    assert min(g for n, g in gaps.items() if n != "side_conv") > 1e-3  # every live space costs something
    assert [r["layer"] for r in rows][0] == "stem_conv"  # layer order


def test_sensitivity_only_and_bad_names():
    model = _toy()
    rows = cp.sensitivity(model, lambda slim: cp.count_params(slim), 0.5, divisor=1, min_channels=1,
                          only=["project_conv", "mid_conv"])
    assert [r["layer"] for r in rows] == ["stem_conv", "mid_conv"]  # project_conv names the residual stream's space
    assert all(r["value"] < cp.count_params(model) for r in rows)
    with pytest.raises(ValueError, match=r"\['group'\] produce no prunable channel space"):
        cp.sensitivity(model, lambda slim: 0.0, 0.5, only=["group"])


def test_sensitivity_covers_layers_that_prune_their_inside():
    from tfalign.models.pose_tree_moe import ExpertCNNs  # noqa: F401 - registered for the built model
    arch, config = resolve("pose_tree_moe")
    model = arch.build(config)
    rows = cp.sensitivity(model, lambda slim: cp.count_params(slim), 0.5, only=["s1_experts"])
    assert [r["layer"] for r in rows] == ["s1_experts"] and rows[0]["kept"] <= rows[0]["size"] // 2 + 8
    assert rows[0]["value"] < cp.count_params(model)
