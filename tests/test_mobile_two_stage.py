"""Two-stage mobile model: graph, loss (eqs. 2–3 and the Table 1 ablations), RoIAlign geometry, export, weights."""
import dataclasses
import os

import numpy as np
import pytest

from tfalign import config as cfg_lib
from tfalign._keras import keras, tf
from tfalign.layers import PointPatches
from tfalign.models import mobile_two_stage as mts
from tfalign.models.base import resolve


def tiny(**kw):
    """64-px input, 8×8 stage-1 heatmaps, 4×4 RoIs: the whole graph in a few ms."""
    arch, cfg = resolve("mobile_two_stage")
    spec = cfg_lib.replace(cfg.input, height=64, width=64)
    base = dict(input=spec, blocks=((8, 1, 1, 1), (8, 1, 2, 2), (16, 1, 2, 2), (16, 1, 2, 2)), stem_channels=8,
                heatmap_size=8, stage2_channels=8, roi_size=4)
    base.update(kw)
    return arch, cfg_lib.replace(cfg, **base)


def batch(cfg, n=2, seed=0):
    rng = np.random.RandomState(seed)
    return {"image": rng.uniform(-1, 1, (n, cfg.input.height, cfg.input.width, 3)).astype(np.float32),
            "points": rng.uniform(0.2, 0.8, (n, cfg.input.num_points, 2)).astype(np.float32),
            "mask": np.ones((n, cfg.input.num_points), np.float32)}


# --- configuration -------------------------------------------------------------------------------------------


def test_presets_pin_params_and_meet_budget():
    counts = {}
    for name in ("mobile_two_stage", "mobile_two_stage_a05"):
        arch, cfg = resolve(name)
        counts[name] = arch.build(cfg).count_params()
    assert counts == {"mobile_two_stage": 143720, "mobile_two_stage_a05": 47992}
    assert counts["mobile_two_stage"] <= 200_000  # issue goal
    arch, cfg = resolve("mobile_two_stage")
    assert cfg.alpha == 1.0 and resolve("mobile_two_stage_a05")[1].alpha == 0.5
    assert (cfg.input.height, cfg.input.channels) == (128, 3)


@pytest.mark.parametrize("field,value,words", [
    ("alpha", 0.0, "alpha"), ("heatmap_size", 12, "heatmap_size"), ("heatmap_weight", "gauss", "heatmap_weight"),
    ("stage2_stride", 64, "stage2_stride"), ("heatmap_prior", 1.0, "heatmap_prior"),
    ("blocks", ((8, 1, 2),), "block")])
def test_bad_config_names_the_field(field, value, words):
    with pytest.raises(ValueError, match=words):
        tiny(**{field: value})


def test_both_losses_off_is_refused():
    with pytest.raises(ValueError, match="nothing would be trained"):
        tiny(heatmap_loss=False, l2_loss=False)


def test_config_json_round_trip():
    _, cfg = tiny(alpha=0.5, stage2=False)
    again = cfg_lib.from_dict(mts.MobileTwoStageConfig, cfg_lib.to_dict(cfg))
    assert again == cfg


# --- graph ---------------------------------------------------------------------------------------------------


def test_outputs_and_shapes():
    arch, cfg = tiny()
    model = arch.build(cfg)
    out = model(batch(cfg)["image"])
    assert list(out) == ["landmarks", "coarse", "heatmap1", "heatmap2"]
    assert out["landmarks"].shape == (2, 68, 2) and out["coarse"].shape == (2, 68, 2)
    assert out["heatmap1"].shape == (2, 8, 8, 68) and out["heatmap2"].shape == (2, 4, 4, 68)
    # Prior init: every cell starts near heatmap_prior, not 0.5.
    assert abs(float(np.median(out["heatmap1"])) - cfg.heatmap_prior) < 0.05
    # The per-landmark predict block is one grouped convolution with a separate kernel per landmark.
    predict = model.get_layer("predict")
    assert predict.groups == 68 and predict.kernel.shape == (3, 3, 8, 68)


def test_alpha_halves_widths():
    arch, cfg = resolve("mobile_two_stage")
    full = arch.build(cfg)
    half = arch.build(cfg_lib.replace(cfg, alpha=0.5))
    assert half.get_layer("block3_0_project_conv").filters * 2 == full.get_layer("block3_0_project_conv").filters
    assert half.count_params() < 0.5 * full.count_params()


def test_without_second_stage_landmarks_are_the_coarse_estimate():
    arch, cfg = tiny(stage2=False)
    model = arch.build(cfg)
    out = model(batch(cfg)["image"])
    assert "heatmap2" not in out
    np.testing.assert_array_equal(out["landmarks"].numpy(), out["coarse"].numpy())
    assert not any(isinstance(layer, PointPatches) for layer in model.layers)


def test_forward_backward_reaches_every_weight():
    arch, cfg = tiny()
    model = arch.build(cfg)
    b = batch(cfg)
    with tf.GradientTape() as tape:
        loss, parts = arch.loss(cfg, model(b["image"], training=True), b)
    grads = tape.gradient(loss, model.trainable_variables)
    assert set(parts) == {"heatmap1", "heatmap2", "l2", "l2_coarse"}
    missing = [v.name for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    assert np.isfinite(float(loss))


def test_roi_positions_do_not_backpropagate():
    arch, cfg = tiny(l2_loss=False)
    model = arch.build(cfg)
    b = batch(cfg)
    hm1_vars = model.get_layer("heatmap1").trainable_variables
    with tf.GradientTape() as tape:
        out = model(b["image"], training=True)
        loss = mts.two_stage_loss(cfg, out, b)[1]["heatmap2"]
    grads = tape.gradient(loss, hm1_vars)
    # heatmap2's loss reaches stage 1 only through the RoI centres, which are sampling positions (Mask R-CNN).
    assert all(g is None or not np.any(g.numpy()) for g in grads)


def test_a_few_steps_fit_one_batch():
    arch, cfg = tiny()
    model = arch.build(cfg)
    b = batch(cfg, n=4, seed=3)
    opt = keras.optimizers.Adam(3e-3)
    losses = []
    for _ in range(40):
        with tf.GradientTape() as tape:
            loss, _ = arch.loss(cfg, model(b["image"], training=True), b)
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


# --- loss ----------------------------------------------------------------------------------------------------


def _reference_heatmap_loss(pred, points, mask, sigma, weighted):
    """Eqs. (2)–(3) written out with loops over the cells (NumPy)."""
    b, h, w, n = pred.shape
    total, count = 0.0, 0.0
    for i in range(b):
        for l in range(n):
            if not mask[i, l]:
                continue
            gx, gy = points[i, l, 0] * w - 0.5, points[i, l, 1] * h - 0.5
            s = 0.0
            for y in range(h):
                for x in range(w):
                    d2 = (x - gx) ** 2 + (y - gy) ** 2
                    t = np.exp(-d2 / (2 * sigma * sigma))
                    p = np.clip(pred[i, y, x, l], 1e-6, 1 - 1e-6)
                    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
                    s += ce * (2.0 * d2 / (w * w + h * h) if weighted else 1.0)
            total += s
            count += 1
    return total / count


@pytest.mark.parametrize("weighting", ["distance", "uniform"])
def test_heatmap_loss_matches_eq2_eq3(weighting):
    from tfalign.data import targets

    rng = np.random.RandomState(1)
    pred = rng.uniform(0.01, 0.99, (2, 5, 6, 3)).astype(np.float32)
    pts = rng.uniform(0, 1, (2, 3, 2)).astype(np.float32)
    mask = np.array([[1, 0, 1], [1, 1, 1]], np.float32)
    target = targets.gaussian_heatmaps(pts, 5, 6, sigma=1.3)
    got = mts.heatmap_loss(pred, target, mts.squared_distances(pts, 5, 6), mask, weighting)
    want = _reference_heatmap_loss(pred, pts, mask, 1.3, weighting == "distance")
    assert float(got) == pytest.approx(want, rel=1e-4)


def test_eq3_weight_ignores_the_ground_truth_cell():
    from tfalign.data import targets

    pts = np.array([[[4.5 / 8, 2.5 / 8]]], np.float32)  # the centre of cell (4, 2) of an 8×8 map
    target = targets.gaussian_heatmaps(pts, 8, 8, sigma=1.0).numpy()
    wrong = target.copy()
    wrong[0, 2, 4, 0] = 0.01  # a miss exactly at the ground truth costs nothing under eq. (3)...
    d2 = mts.squared_distances(pts, 8, 8)
    ones = np.ones((1, 1), np.float32)
    base = float(mts.heatmap_loss(target, target, d2, ones))
    assert float(mts.heatmap_loss(wrong, target, d2, ones)) == pytest.approx(base, abs=1e-6)
    far = target.copy()
    far[0, 7, 0, 0] = 0.99  # ...while a false peak far away costs the most
    assert float(mts.heatmap_loss(far, target, d2, ones)) > base + 1.0
    assert float(mts.heatmap_loss(wrong, target, d2, ones, "uniform")) > float(
        mts.heatmap_loss(target, target, d2, ones, "uniform"))


@pytest.mark.parametrize("overrides,keys", [
    ({}, {"heatmap1", "heatmap2", "l2", "l2_coarse"}),
    ({"heatmap_loss": False}, {"l2", "l2_coarse"}),  # Table 1: without heatmap loss
    ({"l2_loss": False}, {"heatmap1", "heatmap2"}),  # Table 1: without L2 loss
    ({"stage2": False}, {"heatmap1", "l2"}),  # Table 1: without second stage
])
def test_table1_ablations_select_loss_terms(overrides, keys):
    arch, cfg = tiny(**overrides)
    model = arch.build(cfg)
    b = batch(cfg)
    total, parts = arch.loss(cfg, model(b["image"]), b)
    assert set(parts) == keys
    assert float(total) == pytest.approx(sum(float(v) for v in parts.values()), rel=1e-5)


def test_masked_points_do_not_count():
    arch, cfg = tiny()
    model = arch.build(cfg)
    b = batch(cfg)
    out = model(b["image"])
    b["mask"][:, 10:] = 0
    moved = dict(b, points=b["points"].copy())
    moved["points"][:, 10:] = 0.05  # change only unannotated ground truth
    a = arch.loss(cfg, out, b)[0]
    c = arch.loss(cfg, out, moved)[0]
    assert float(a) == pytest.approx(float(c), rel=1e-6)


# --- RoIAlign ------------------------------------------------------------------------------------------------


def _numpy_bilinear_zero(feat, x, y):
    """Bilinear interpolation of feat [H, W, C] at pixel (x, y) (centre convention), zero outside the map."""
    h, w, c = feat.shape
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    out = np.zeros(c, np.float64)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= xx < w and 0 <= yy < h:
                out += wx * wy * feat[yy, xx]
    return out


def _numpy_roi_align(feat, box, size):
    """RoIAlign of one normalised box (x1, y1, x2, y2), one sample at the centre of each of size × size bins."""
    h, w, _ = feat.shape
    x1, y1, x2, y2 = box[0] * w - 0.5, box[1] * h - 0.5, box[2] * w - 0.5, box[3] * h - 0.5
    bw, bh = (x2 - x1) / size, (y2 - y1) / size
    return np.stack([np.stack([_numpy_bilinear_zero(feat, x1 + (i + 0.5) * bw, y1 + (j + 0.5) * bh)
                               for i in range(size)]) for j in range(size)])


def test_roi_align_matches_numpy_reference():
    rng = np.random.RandomState(7)
    feat = rng.randn(2, 10, 10, 3).astype(np.float32)
    size, side = 5, 0.3
    centres = rng.uniform(-0.1, 1.1, (2, 6, 2)).astype(np.float32)  # some boxes cross or leave the map
    centres[0, 0] = (0.5, 0.5)
    got = PointPatches(size, spacing=side * 10 / size)([feat, centres]).numpy()
    assert got.shape == (2, 6, size, size, 3)
    for b in range(2):
        for p in range(6):
            cx, cy = centres[b, p]
            box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
            np.testing.assert_allclose(got[b, p], _numpy_roi_align(feat[b], box, size), atol=1e-5)


def test_refinement_offset_maps_roi_cells_to_image_positions():
    """A refinement heatmap peaked on RoI cell k moves the landmark exactly to the image position sampled there."""
    _, cfg = tiny()
    s, side, fmap = cfg.roi_size, cfg.roi_side, 16
    xs = np.arange(fmap, dtype=np.float32)
    # A feature map holding its own (x, y) pixel coordinates: bilinear sampling reproduces sample positions exactly.
    coords = np.stack(np.meshgrid(xs, xs, indexing="xy"), -1)[None]  # [1, 16, 16, 2]
    coarse = np.array([[[0.41, 0.57], [0.63, 0.35]]], np.float32)
    patches = PointPatches(s, spacing=side * fmap / s)([coords, coarse]).numpy()  # [1, 2, S, S, 2] pixel coords
    sampled = (patches + 0.5) / fmap  # normalised image positions of every RoI sample
    refine = mts.RefineOffset(side)
    for ky in range(s):
        for kx in range(s):
            u = np.array([[[(kx + 0.5) / s, (ky + 0.5) / s]] * 2], np.float32)
            np.testing.assert_allclose(refine([coarse, u]).numpy()[0], sampled[0, :, ky, kx], atol=1e-5)


# --- serialization and weights ------------------------------------------------------------------------------


def test_keras_save_load_round_trip(tmp_path):
    arch, cfg = tiny()
    model = arch.build(cfg)
    x = batch(cfg)["image"]
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.models.load_model(path)
    for key, value in model(x).items():
        np.testing.assert_allclose(again(x)[key].numpy(), value.numpy(), atol=1e-6)


def test_save_and_load_pretrained_round_trip(tmp_path):
    arch, cfg = tiny()
    model = arch.build(cfg)
    x = batch(cfg)["image"]
    mts.save_pretrained(model, cfg, str(tmp_path), dtype="float32")
    again, cfg2 = mts.load_pretrained(str(tmp_path))
    assert cfg2 == cfg
    np.testing.assert_allclose(again(x)["landmarks"].numpy(), model(x)["landmarks"].numpy(), atol=1e-6)


def test_load_pretrained_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        mts.load_pretrained(str(tmp_path))
    arch, cfg = tiny()
    mts.save_pretrained(arch.build(cfg), cfg, str(tmp_path))
    other = cfg_lib.replace(cfg, stage2=False)
    from tfalign.io import atomic_write_json
    atomic_write_json(str(tmp_path / "config.json"), cfg_lib.to_dict(other))
    with pytest.raises(ValueError, match="weights.npz"):
        mts.load_pretrained(str(tmp_path))


SHIPPED = os.path.isfile(os.path.join(mts.WEIGHTS_DIR, mts.WEIGHTS_FILE))


@pytest.mark.skipif(not SHIPPED, reason="no shipped weights in tfalign/weights/mobile_two_stage yet")
def test_shipped_weights_load_without_data():
    model, cfg = mts.load_pretrained()
    assert cfg.input.height == 128 and cfg.alpha == 1.0
    x = np.zeros((1, 128, 128, 3), np.float32)
    pts = model(x)["landmarks"].numpy()
    assert pts.shape == (1, 68, 2) and np.all(np.isfinite(pts))


@pytest.mark.needs_data
@pytest.mark.skipif(not SHIPPED, reason="no shipped weights in tfalign/weights/mobile_two_stage yet")
def test_shipped_weights_align_held_out_real_faces(shared_data):
    from tfalign.data.spec import load_records
    from tfalign.training import evaluation

    model, cfg = mts.load_pretrained()
    val = load_records(f"300w:{shared_data / 'lfpw' / 'trainset'}#val")[:16]
    pred = evaluation.predict_keras(evaluation.landmark_fn(model), val, cfg.input, batch_size=16)
    true, mask = evaluation.targets(val, cfg.input.schemes)
    nme = evaluation.score(pred, true, mask, cfg.input.schemes)["primary"]
    # Model card: 4.15 % on all 72 #val faces; a broken load or preprocessing mismatch gives > 20 %.
    assert nme < 0.06, f"shipped weights: inter-ocular NME {100 * nme:.2f} % on 16 held-out LFPW faces"


# --- TFLite --------------------------------------------------------------------------------------------------


def _peaky(model, x):
    """Give a random model real, input-dependent peaks: BN statistics of ``x`` (momentum 0, one training call) and
    3× head kernels. Untrained maps are flat, and a quantisation error hides behind landmarks that all sit at
    the map centre."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)
    for name in ("heatmap1", "predict"):
        layer = model.get_layer(name)
        k, b = layer.get_weights()
        layer.set_weights([k * 3.0, b])
    return model


def _run_tflite(model_bytes, x):
    from mobile_export.tflite import Runner
    return Runner(model_bytes).batch(x)


@pytest.fixture(scope="module")
def tflite_case():
    tf.random.set_seed(0)
    arch, cfg = tiny()
    x = np.random.RandomState(5).uniform(-1, 1, (12, 64, 64, 3)).astype(np.float32)
    model = _peaky(arch.build(cfg), x)
    return arch.inference_model(cfg, model), x


def test_tflite_float_is_builtin_and_matches_keras(tflite_case):
    from mobile_export import tflite as tfl

    inference, x = tflite_case
    data = tfl.convert(inference, "none")  # raises on any Flex/custom op
    ops = set(tfl.op_names(data))
    assert {"GATHER", "CONV_2D", "FULLY_CONNECTED"} <= ops
    assert not any(o.startswith("CUSTOM") or "FLEX" in o.upper() for o in ops)
    np.testing.assert_allclose(_run_tflite(data, x), inference(x).numpy(), atol=1e-4)


def test_tflite_full_int8_tracks_float(tflite_case):
    from mobile_export import tflite as tfl

    inference, x = tflite_case
    data = tfl.convert(inference, "int8", representative=lambda: iter(x[:8]))
    info = tfl.inspect(data)
    # Every convolution (all the MACs) is int8; only the sampling/expectation ops listed in the model stay float.
    assert info["ops"].get("CONV_2D", 0) > 0
    assert not [op for op in info["float_ops"] if op.split()[0] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    ref = inference(x).numpy()
    got = _run_tflite(data, x)
    spread_px = ref.std(axis=0).mean() * 64
    assert spread_px > 2.0  # the landmarks really move between inputs (else the comparison proves nothing)
    err_px = np.abs(got - ref).mean() * 64
    # A collapsed int8 head (STACK.md) would be off by about the spread; measured: 0.54 px of a 4.9 px spread.
    assert err_px < 0.25 * spread_px, f"int8 vs float mean error {err_px:.2f} px (spread {spread_px:.2f} px)"
    print(f"int8 vs float: {err_px:.3f} px mean abs error at 64 px, landmark spread {spread_px:.2f} px")


def test_int8_export_keeps_sampling_and_expectations_float():
    from mobile_export import tflite as tfl

    arch, cfg = tiny()
    model = arch.build(cfg)
    kept = sorted(layer.name for layer in model.layers if tfl.keeps_float(layer))
    assert kept == ["coarse", "landmarks", "refine", "roi_align"]
    # The switch is a class attribute, so it survives Keras serialization.
    again = keras.Model.from_config(model.get_config())
    assert sorted(layer.name for layer in again.layers if tfl.keeps_float(layer)) == kept


def test_int8_model_survives_an_empty_heatmap(tflite_case):
    """A map that quantises to all zeros (no face, a black frame) must give a point, not abort the interpreter:
    the int8 DIV kernel refuses a zero divisor, so the expectation stays float."""
    from mobile_export import tflite as tfl

    inference, x = tflite_case
    head = inference.get_layer("heatmap1")
    k, b = head.get_weights()
    head.set_weights([k * 0.0, b * 0.0 - 30.0])  # sigmoid(-30) = 1e-13: every cell of every map is 0 in int8
    try:
        data = tfl.convert(inference, "int8", representative=lambda: iter(x[:4]))
        got = _run_tflite(data, x[:2])
    finally:
        head.set_weights([k, b])
    assert np.all(np.isfinite(got)) and got.shape == (2, 68, 2)


@pytest.mark.parametrize("impl", ["depthwise", "native"])
def test_coreml_conversion_keeps_the_grouped_predict_block(impl):
    pytest.importorskip("coremltools")
    from mobile_export import coreml

    arch, cfg = tiny()
    cfg = dataclasses.replace(cfg, group_impl=impl)
    inference = arch.inference_model(cfg, arch.build(cfg))
    info = {"name": "tiny", "architecture": "mobile_two_stage", "weights": "random-init", "license": "n/a",
            "training_data": "none"}
    mlmodel, _ = coreml.convert(inference, cfg.input, info)
    ops = coreml._program_ops(mlmodel)
    groups = [int(op.groups.val) for op in ops if op.op_type == "conv"]
    # One conv with a kernel per landmark, not 68 convs: grouped (68 groups) or depthwise over the 68 RoI stacks
    # followed by one sum per landmark.
    if impl == "native":
        assert 68 in groups
    else:
        assert 68 * cfg.width(cfg.stage2_channels) in groups
        assert any(op.op_type == "reduce_sum" for op in ops)
