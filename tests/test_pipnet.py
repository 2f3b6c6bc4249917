"""PIPNet: paper defaults, NRM, encode ↔ decode, loss, training step, serialization, TFLite (float and int8)."""
import dataclasses

import numpy as np
import pytest

from tfalign._keras import keras, tf
from tfalign.config import replace
from tfalign.data.targets import pip_targets
from tfalign.models import pipnet as P
from tfalign.models.base import resolve

N = 68


def _tiny(**overrides):
    _, cfg = resolve("pipnet_mbv3")
    base = {"input.height": 64, "input.width": 64, "backbone": "mobilenet_v3_small"}
    return replace(cfg, **{**base, **overrides})


def _faces(batch, seed=0):
    """Random faces: the packaged mean face, jittered, so neighbours are meaningful."""
    rng = np.random.default_rng(seed)
    mean = P.load_mean_face(("300w_68",))
    pts = mean[None] + rng.normal(0, 0.02, (batch, N, 2))
    return np.clip(pts, 0.01, 0.99).astype("float32")


def _maps_from_targets(t, neighbors_used=True):
    """Perfect network outputs: the encoded targets themselves (offsets only matter at the positive cell)."""
    maps = {k: t[k] for k in ("score", "offset_x", "offset_y")}
    if neighbors_used:
        maps.update(neighbor_x=t["neighbor_x"], neighbor_y=t["neighbor_y"])
    return maps


# --- config -------------------------------------------------------------------------------------------------
def test_defaults_are_the_papers():
    arch, cfg = resolve("pipnet_r18")
    assert arch.name == "pipnet" and cfg.backbone == "resnet18"
    assert (cfg.input.height, cfg.input.width, cfg.input.channels) == (256, 256, 3)
    assert cfg.stride == 32 and cfg.grid == (8, 8) and cfg.num_neighbors == 10
    assert cfg.loss_weights == (0.1, 0.1)
    t = cfg.train
    assert (t.optimizer, t.learning_rate, t.schedule, t.milestones, t.decay, t.batch_size, t.epochs) == \
        ("adam", 1e-4, "step", (30, 50), 0.1, 16, 60)
    assert resolve("pipnet_mbv3")[1].backbone == "mobilenet_v3_large"
    # Presets pin their neighbour table (a run's config.json then fixes it); the bare architecture computes it.
    assert np.array_equal(np.asarray(cfg.neighbors), P.resolve_neighbors(replace(cfg, neighbors=())))
    assert resolve("pipnet")[1].neighbors == ()


@pytest.mark.parametrize("stride,weight", [(16, 0.02), (32, 0.1), (64, 0.125), (128, 0.25)])
def test_loss_weights_follow_the_stride(stride, weight):
    cfg = replace(resolve("pipnet")[1], stride=stride)
    assert cfg.loss_weights == (weight, weight)
    assert replace(cfg, alpha=1.0).loss_weights == (1.0, weight)


def test_config_round_trips_through_a_dict():
    arch, cfg = resolve("pipnet_mbv3")
    cfg = replace(cfg, neighbors=tuple(tuple(int(i) for i in r) for r in P.resolve_neighbors(cfg)))
    back = arch.config_from_dict(dataclasses.asdict(cfg))
    assert back == cfg


@pytest.mark.parametrize("overrides,message", [
    ({"stride": 8}, "stride must be one of"),
    ({"backbone": "vgg"}, "unknown backbone 'vgg'"),
    ({"num_neighbors": 68}, "num_neighbors must be in"),
    ({"neighbors": ((1, 2),)}, "neighbors must be \\[68\\]\\[10\\]"),
    ({"stc": True, "input.height": 96, "input.width": 96}, "divisible by 128"),
    ({"alpha": -1.0}, "alpha must be >= 0"),
])
def test_bad_config_is_refused_with_the_field_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        _tiny(**overrides)


def test_neighbour_table_must_not_contain_the_landmark_itself():
    table = np.tile(np.arange(10), (N, 1))  # row 0 lists landmark 0 as its own neighbour
    with pytest.raises(ValueError, match="exclude the landmark itself"):
        _tiny(neighbors=tuple(map(tuple, table.tolist())))


# --- neighbours and NRM ---------------------------------------------------------------------------------------
def test_neighbours_come_from_the_packaged_mean_face():
    nb = P.resolve_neighbors(_tiny())
    assert nb.shape == (N, 10)
    assert not np.any(nb == np.arange(N)[:, None])
    # Eye corners' nearest neighbours are eye points (36-47), the chin's are jaw points (0-16).
    assert set(nb[36, :3]) <= set(range(36, 48)) | set(range(17, 22))
    assert set(nb[8, :2]) <= set(range(17))


def test_mtfl_points_get_a_mean_face_through_the_scheme_conversion():
    face = P.load_mean_face(("300w_68", "mtfl_5"))
    assert face.shape == (73, 2)
    np.testing.assert_allclose(face[68], face[36:42].mean(0), atol=1e-9)


def test_nrm_merge_is_the_plain_mean_of_own_and_received_predictions():
    nb = np.array([[1], [0], [1]])  # 0 ← 1, 1 ← 0 and 2, 2 ← nobody
    m = P.nrm_merge_matrix(nb)
    np.testing.assert_allclose(m.sum(1), 1.0)
    own = np.array([10.0, 20.0, 30.0])
    nb_pred = np.array([21.0, 11.0, 22.0])  # 0 says 1 is at 21, 1 says 0 is at 11, 2 says 1 is at 22
    merged = m @ np.concatenate([own, nb_pred])
    np.testing.assert_allclose(merged, [(10 + 11) / 2, (20 + 21 + 22) / 3, 30.0])


# --- encode ↔ decode -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,stride", [(256, 32), (256, 16), (256, 128)])
def test_encode_then_decode_gives_the_points_back(size, stride):
    cfg = replace(resolve("pipnet")[1], **{"stride": stride})
    h = w = size // stride
    nb = P.resolve_neighbors(cfg)
    pts = _faces(4)
    pts[0, :4] = [[0.0, 0.0], [0.999, 0.999], [0.5, 0.5], [1.0 / w, 2.0 / h]]  # borders and cell edges
    t = pip_targets(pts, h, w, nb)
    maps = _maps_from_targets(t)
    got = P.decode_pip(maps["score"], maps["offset_x"], maps["offset_y"], maps["neighbor_x"], maps["neighbor_y"],
                       merge=P.nrm_merge_matrix(nb)).numpy()
    assert np.abs(got - pts).max() * size < 0.5  # pixels of the input crop
    own_only = P.decode_pip(maps["score"], maps["offset_x"], maps["offset_y"]).numpy()
    assert np.abs(own_only - pts).max() * size < 0.5


def test_decode_averages_a_wrong_own_offset_with_the_neighbours():
    h = w = 8
    nb = P.resolve_neighbors(_tiny())
    pts = _faces(1)
    t = pip_targets(pts, h, w, nb)
    ox = t["offset_x"].numpy()
    ox[..., 30] += 2.0 * t["score"].numpy()[..., 30]  # landmark 30 claims to be 2 cells to the right
    merged = P.decode_pip(t["score"], tf.constant(ox), t["offset_y"], t["neighbor_x"], t["neighbor_y"],
                          merge=P.nrm_merge_matrix(nb)).numpy()
    received = int((nb == 30).sum())
    assert received > 0
    np.testing.assert_allclose(merged[0, 30, 0] - pts[0, 30, 0], 2.0 / w / (1 + received), atol=1e-5)


# --- model and loss ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    arch, _ = resolve("pipnet")
    cfg = _tiny(stc=True, **{"input.height": 128, "input.width": 128})
    return arch, cfg, arch.build(cfg)


def test_outputs_and_shapes(tiny_model):
    _, cfg, model = tiny_model
    shapes = {k: tuple(v.shape[1:]) for k, v in model.output.items()}
    assert shapes == {"landmarks": (N, 2), "score": (4, 4, N), "offset_x": (4, 4, N), "offset_y": (4, 4, N),
                      "neighbor_x": (4, 4, 10 * N), "neighbor_y": (4, 4, 10 * N), "score_s64": (2, 2, N),
                      "score_s128": (1, 1, N)}
    # The STC heads reuse the stride-32 score convolution: no extra parameters.
    assert model.get_layer("pip_score") is not None
    assert not [l for l in model.layers if "stc" in l.name and l.weights]


def test_loss_is_zero_for_perfect_maps_and_ignores_masked_points():
    arch, cfg = resolve("pipnet")[0], _tiny()
    nb = P.resolve_neighbors(cfg)
    pts = _faces(2)
    mask = np.ones((2, N), np.float32)
    perfect = _maps_from_targets(pip_targets(pts, 2, 2, nb))
    total, terms = arch.loss(cfg, perfect, {"points": pts, "mask": mask})
    assert float(total) == pytest.approx(0.0, abs=1e-6)
    # Corrupt every map of landmark 5 of face 1; masking that point restores a zero loss.
    bad = {k: v.numpy().copy() for k, v in perfect.items()}
    for key in ("score", "offset_x", "offset_y"):
        bad[key][1, ..., 5] += 1.0
    for key in ("neighbor_x", "neighbor_y"):
        bad[key][1, ..., 50:60] += 1.0
    total, terms = arch.loss(cfg, bad, {"points": pts, "mask": mask})
    assert min(float(terms["score"]), float(terms["offset"]), float(terms["neighbor"])) > 0
    mask[1, 5] = 0.0
    total, _ = arch.loss(cfg, bad, {"points": pts, "mask": mask})
    assert float(total) == pytest.approx(0.0, abs=1e-6)


def test_stc_task_selects_which_head_learns(tiny_model):
    arch, cfg, model = tiny_model
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 128, 128, 3)).astype("float32")
    pts = _faces(2)
    mask = np.ones((2, N), np.float32)
    with tf.GradientTape(persistent=True) as tape:
        out = model(image, training=False)
        _, t1 = arch.loss(cfg, out, {"points": pts, "mask": mask, "stc_task": np.array([1, 1])})
        _, t3 = arch.loss(cfg, out, {"points": pts, "mask": mask, "stc_task": np.array([3, 3])})
    offset_kernel = model.get_layer("pip_offset_x").kernel
    assert tape.gradient(t1["score"], offset_kernel) is None or \
        float(tf.reduce_max(tf.abs(tape.gradient(t1["score"], offset_kernel)))) == 0.0
    assert float(t1["offset"]) == 0.0 and float(t1["neighbor"]) == 0.0
    assert float(t3["offset"]) > 0.0
    # Task 1 learns on the 1x1 (stride-128) map: its score loss differs from Task 3's 4x4 map.
    assert float(t1["score"]) != pytest.approx(float(t3["score"]))


def test_training_steps_reduce_the_loss():
    arch, cfg = resolve("pipnet")[0], _tiny()
    model = arch.build(cfg)
    opt = keras.optimizers.Adam(1e-3)
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(2, 64, 64, 3)).astype("float32"), "points": _faces(2),
             "mask": np.ones((2, N), np.float32)}
    losses = []
    for _ in range(6):
        with tf.GradientTape() as tape:
            total, _ = arch.loss(cfg, model(batch["image"], training=True), batch)
        grads = tape.gradient(total, model.trainable_variables)
        assert all(g is not None for g in grads)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        losses.append(float(total))
    assert losses[-1] < losses[0]


def test_saved_model_round_trip(tiny_model, tmp_path):
    _, _, model = tiny_model
    path = str(tmp_path / "pipnet.keras")
    model.save(path)
    back = keras.models.load_model(path)
    x = np.random.default_rng(2).normal(size=(1, 128, 128, 3)).astype("float32")
    a, b = model.predict(x, verbose=0), back.predict(x, verbose=0)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-5)
    layer = P.PIPDecode.from_config(model.get_layer("landmarks").get_config())
    assert layer.neighbors == model.get_layer("landmarks").neighbors


# --- several schemes (LFPW 68 points + MTFL 5 points through the per-sample mask) ------------------------------
MULTI = ("300w_68", "mtfl_5")


def _multi(**overrides):
    return _tiny(**{"input.schemes": MULTI, "neighbors": (), **overrides})


def test_the_preset_neighbour_table_does_not_fit_other_schemes():
    with pytest.raises(ValueError, match="neighbors must be \\[73\\]\\[10\\].*set neighbors to \\[\\]"):
        _tiny(**{"input.schemes": MULTI})


def test_each_scheme_takes_its_neighbours_from_its_own_points():
    nb = P.resolve_neighbors(_multi())
    assert nb.shape == (73, 10)
    # The 68 points decode exactly as in a 68-point model: same table, nothing from the 5-point heads.
    np.testing.assert_array_equal(nb[:N], P.resolve_neighbors(_tiny()))
    # mtfl_5 has 4 other points: its rows cycle through them, nearest first, never itself or a 68-point slot.
    for i in range(5):
        row = nb[N + i]
        assert set(row) == set(range(N, N + 5)) - {N + i}
        np.testing.assert_array_equal(row[4:8], row[:4])
    face = P.load_mean_face(MULTI)
    d = np.linalg.norm(face[nb[N:, :4]] - face[N:, None], axis=-1)
    assert np.all(np.diff(d, axis=1) >= 0)
    with pytest.raises(ValueError, match="mean face must be \\[73, 2\\]"):
        P.scheme_neighbors(face[:N], MULTI, 10)


def test_encode_then_decode_gives_both_schemes_back():
    nb = P.resolve_neighbors(_multi())
    pts = np.concatenate([_faces(3), P.load_mean_face(("mtfl_5",))[None].repeat(3, 0).astype("float32")], axis=1)
    t = pip_targets(pts, 8, 8, nb)
    got = P.decode_pip(t["score"], t["offset_x"], t["offset_y"], t["neighbor_x"], t["neighbor_y"],
                       merge=P.nrm_merge_matrix(nb)).numpy()
    assert got.shape == (3, 73, 2) and np.abs(got - pts).max() * 256 < 0.5


def test_a_5_point_face_trains_only_the_5_point_heads():
    arch, cfg = resolve("pipnet")[0], _multi()
    model = arch.build(cfg)
    assert model.output["score"].shape[-1] == 73 and model.output["neighbor_x"].shape[-1] == 730
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 64, 64, 3)).astype("float32")
    pts = np.concatenate([_faces(2), rng.uniform(0.3, 0.7, (2, 5, 2)).astype("float32")], axis=1)
    mtfl_only = np.zeros((2, 73), np.float32)
    mtfl_only[:, N:] = 1.0
    kernels = {k: model.get_layer(f"pip_{k}").kernel for k in ("score", "offset_x", "neighbor_x")}
    with tf.GradientTape() as tape:
        total, terms = arch.loss(cfg, model(image, training=True), {"image": image, "points": pts,
                                                                   "mask": mtfl_only})
    grads = dict(zip(kernels, tape.gradient(total, list(kernels.values()))))
    assert min(float(terms["score"]), float(terms["offset"]), float(terms["neighbor"])) > 0
    for key, channels in (("score", N), ("offset_x", N), ("neighbor_x", N * 10)):
        g = np.abs(grads[key].numpy())
        assert g[..., :channels].max() == 0.0, key  # unannotated 68 points: no signal
        assert g[..., channels:].max() > 0.0, key


def test_mixed_68_and_5_point_data_feed_one_model():
    from tfalign.data.spec import load_records
    from tfalign.training.data import make_dataset
    arch, cfg = resolve("pipnet")[0], _multi()
    records = load_records("synthetic:2") + load_records("synthetic:2:mtfl_5")
    batch = next(iter(make_dataset(records, cfg.input, training=True, batch_size=4, seed=0)))
    mask = batch["mask"].numpy()
    assert sorted(mask[:, :N].sum(1).tolist()) == [0, 0, N, N] and np.all(mask[:, N:] == 1)
    model = arch.build(cfg)
    opt = keras.optimizers.Adam(1e-3)
    losses = []
    for _ in range(6):
        with tf.GradientTape() as tape:
            total, _ = arch.loss(cfg, model(batch["image"], training=True), batch)
        opt.apply_gradients(zip(tape.gradient(total, model.trainable_variables), model.trainable_variables))
        losses.append(float(total))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


# --- TFLite ------------------------------------------------------------------------------------------------------
def _run_tflite(model_bytes, x):
    from mobile_export.tflite import Runner
    return Runner(model_bytes).batch(x)


def test_full_model_converts_to_builtin_tflite_ops(tiny_model):
    from mobile_export import tflite as tfl
    arch, cfg, model = tiny_model
    inference = arch.inference_model(cfg, model)
    blob = tfl.convert(inference)
    tfl.check_builtin(blob)
    ops = set(tfl.op_names(blob))
    assert {"ARG_MAX", "CONV_2D"} <= ops and not any(o.startswith("Flex") for o in ops)
    x = np.random.default_rng(3).normal(size=(1, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(_run_tflite(blob, x), inference.predict(x, verbose=0), atol=1e-4)


def test_decode_head_survives_full_int8():
    """Maps → PIPDecode alone, calibrated on encoded faces: int8 decoding stays within a pixel of float."""
    from mobile_export import tflite as tfl
    h = w = 8
    nb = P.resolve_neighbors(_tiny())
    widths = (N, N, N, 10 * N, 10 * N)
    maps_in = keras.Input((h, w, sum(widths)), batch_size=1)
    parts = tf.split(maps_in, list(widths), axis=-1)
    model = keras.Model(maps_in, P.PIPDecode(neighbors=nb.tolist())(parts))

    def sample(seed):
        rng = np.random.default_rng(seed)
        t = pip_targets(_faces(1, seed), h, w, nb)
        maps = [t[k].numpy() for k in ("score", "offset_x", "offset_y", "neighbor_x", "neighbor_y")]
        maps[0] = maps[0] * 0.8 + rng.uniform(0, 0.2, maps[0].shape)  # a trained net's peaked, noisy scores
        return np.concatenate(maps, -1).astype("float32")

    blob = tfl.convert(model, "int8", representative=lambda: [sample(s) for s in range(16)])
    tfl.check_builtin(blob)
    for seed in (100, 101, 102):
        x = sample(seed)
        ref = model.predict(x, verbose=0)
        got = _run_tflite(blob, x)
        assert np.abs(got - ref).max() * 256 < 1.5  # pixels of a 256 crop


# --- shipped weights ----------------------------------------------------------------------------------------------
def test_save_and_load_pretrained_round_trip(tmp_path):
    arch, cfg = resolve("pipnet")[0], _tiny()
    model = arch.build(cfg)
    folder = str(tmp_path / "w")
    P.save_pretrained(model, cfg, folder, "float16")
    back, back_cfg = P.load_pretrained(folder)
    assert back_cfg.neighbors and np.array_equal(P.resolve_neighbors(back_cfg), P.resolve_neighbors(cfg))
    x = np.random.default_rng(4).normal(size=(1, 64, 64, 3)).astype("float32")
    a, b = model.predict(x, verbose=0), back.predict(x, verbose=0)
    np.testing.assert_allclose(a["score"], b["score"], atol=2e-2)
    with pytest.raises(ValueError, match="weights.npz: weights do not match"):
        other = _tiny(num_neighbors=3, neighbors=())
        P.save_pretrained(arch.build(other), other, str(tmp_path / "x"))
        import shutil
        shutil.copy(str(tmp_path / "x" / "weights.npz"), folder)
        P.load_pretrained(folder)
    with pytest.raises(ValueError, match="config.json: pretrained PIPNet file not found"):
        P.load_pretrained(str(tmp_path / "nothing"))


def test_shipped_pipnet_mbv3_loads_without_data():
    from tfalign.models.base import load_pretrained
    arch, config, model = load_pretrained("pipnet_mbv3")
    assert arch.name == "pipnet" and config.backbone == "mobilenet_v3_large"
    assert config.neighbors == resolve("pipnet_mbv3")[1].neighbors
    # A flat grey crop still gets a face-like shape (the implicit prior, §3.4): finite points inside the crop,
    # eyes above the mouth.
    pts = model(np.zeros((1, 256, 256, 3), np.float32))["landmarks"].numpy()[0]
    assert np.all(np.isfinite(pts)) and np.all((pts > 0) & (pts < 1))
    assert pts[36:48, 1].mean() < pts[48:68, 1].mean()


# --- best-cell decode (decode="cells") ----------------------------------------------------------------------------
def _with_random_heads(model, seed=0):
    """Heads of the scale of a trained net's (the default init is ~0, which any decode reproduces)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.startswith("pip_"):
            k, b = layer.get_weights()
            layer.set_weights([rng.normal(0, 0.05, k.shape).astype("float32"),
                               rng.normal(0, 0.5, b.shape).astype("float32")])
    return model


@pytest.mark.parametrize("num_neighbors", [0, 4])
def test_cell_decode_equals_the_full_map_decode(num_neighbors):
    arch, _ = resolve("pipnet")
    cfg = _tiny(num_neighbors=num_neighbors, neighbors=())
    model = _with_random_heads(arch.build(cfg))
    cells = arch.inference_model(cfg, model)
    maps = arch.inference_model(replace(cfg, decode="maps"), model)
    assert any(isinstance(layer, P.PIPCellHeads) for layer in cells.layers)
    assert not any(isinstance(layer, P.PIPCellHeads) for layer in maps.layers)
    x = np.random.default_rng(1).normal(size=(3, 64, 64, 3)).astype("float32")
    a, b = cells.predict(x, verbose=0), maps.predict(x, verbose=0)
    assert np.abs(b).max() > 0.1  # the heads matter at this scale
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_cell_decode_model_round_trips_and_converts_to_builtin_ops(tmp_path):
    from mobile_export import tflite as tfl
    arch, _ = resolve("pipnet")
    # Untrained keras.applications MobileNets output the same features in every cell of the 2 x 2 map here, so
    # every best cell is a tie that float rounding decides; the untrained ResNet-18 keeps its cells apart.
    cfg = _tiny(backbone="resnet18")
    model = _with_random_heads(arch.build(cfg), 2)
    inference = arch.inference_model(cfg, model)
    path = str(tmp_path / "cells.keras")
    inference.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(4).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), inference.predict(x, verbose=0), atol=1e-6)
    blob = tfl.convert(inference)
    tfl.check_builtin(blob)
    # TFLite's float rounding may pick the other cell of a near-tie, which moves a point by a whole cell: compare
    # on a face whose best cells are clear.
    for seed in range(5, 40):
        face = np.random.default_rng(seed).normal(size=(1, 64, 64, 3)).astype("float32")
        score = np.sort(model(face)["score"].numpy().reshape(-1, cfg.input.num_points), axis=0)
        if np.min(score[-1] - score[-2]) > 1e-3:
            break
    else:
        pytest.fail("no test face with clear best cells")
    np.testing.assert_allclose(_run_tflite(blob, face), inference.predict(face, verbose=0), atol=1e-4)


@pytest.mark.parametrize("keep_float", [True, False])
def test_float_cell_heads_decide_what_stays_float_in_int8(keep_float):
    from mobile_export import tflite as tfl
    arch, _ = resolve("pipnet")
    cfg = _tiny(float_cell_heads=keep_float)
    inference = arch.inference_model(cfg, _with_random_heads(arch.build(cfg), 3))
    rng = np.random.default_rng(5)
    blob = tfl.convert(inference, "int8",
                       representative=lambda: [rng.normal(size=(1, 64, 64, 3)).astype("float32") for _ in range(4)])
    tfl.check_builtin(blob)
    float_ops = tfl.inspect(blob)["float_ops"]
    assert any("CONV_2D" in op and "pip_cells" in op for op in float_ops) == keep_float
    assert any("landmarks" in op for op in float_ops)  # the NRM average is always float


def test_wrapped_heads_fall_back_to_the_map_decode():
    """tfmot wrappers (QAT, pruning) hide the kernels the cell decode copies: the full-map decode is used."""
    from quantization import qat
    arch, _ = resolve("pipnet")
    cfg = _tiny()
    inference = arch.inference_model(cfg, qat.quantize_model(arch.build(cfg)))
    assert not any(isinstance(layer, P.PIPCellHeads) for layer in inference.layers)
    assert any(isinstance(layer, P.PIPDecode) or "PIPDecode" in type(getattr(layer, "layer", layer)).__name__
               for layer in inference.layers)


def test_cell_decode_of_a_magnitude_pruned_and_stripped_model(tiny_model):
    """strip_pruning clones the layers (a second graph): the cell decode must read this model's own score map."""
    from quantization import pruning
    arch, cfg, model = tiny_model  # with STC heads: the score conv has three inbound nodes
    pruned = pruning.prune_model(_with_random_heads(pruning.copy_model(model), 6), 0.5, end_step=2, frequency=1)
    stripped = pruning.strip(pruned)
    cells = arch.inference_model(cfg, stripped)
    maps = arch.inference_model(replace(cfg, decode="maps"), stripped)
    assert any(isinstance(layer, P.PIPCellHeads) for layer in cells.layers)
    x = np.random.default_rng(7).normal(size=(2, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(cells.predict(x, verbose=0), maps.predict(x, verbose=0), atol=1e-5)
