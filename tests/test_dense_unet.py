import numpy as np
import pytest

from tfalign import config as cfg_lib
from tfalign._keras import keras, tf
from tfalign.layers import DeformableConv2D
from tfalign.models.base import resolve
from tfalign.models.dense_unet import (DenseUNetConfig, HeatmapDecode, coherent_loss, transform_heatmaps)
from tfalign.data.targets import gaussian_heatmaps


def tiny(**kw):
    arch, cfg = resolve("dense_unet")
    spec = cfg_lib.replace(cfg.input, height=32, width=32)
    return arch, cfg_lib.replace(cfg, channels=8, down_steps=2, input=spec, **kw)


def test_deformable_conv_with_zero_offsets_equals_plain_conv():
    x = np.random.RandomState(0).rand(2, 7, 9, 3).astype(np.float32)
    conv = keras.layers.Conv2D(5, 3, padding="same")
    expected = conv(x).numpy()
    deform = DeformableConv2D(5, 3)
    deform(x)
    deform.set_conv_weights(conv.kernel.numpy(), conv.bias.numpy())
    np.testing.assert_allclose(deform(x).numpy(), expected, atol=1e-5)
    # Non-zero offsets really move the taps.
    w = deform.offset_conv.get_weights()
    w[1][:] = 0.5
    deform.offset_conv.set_weights(w)
    assert np.abs(deform(x).numpy() - expected).max() > 1e-2


def test_deformable_conv_integer_offset_is_a_shift():
    # Every tap moved by +1 in x equals the plain convolution of the image shifted left by one pixel.
    x = np.random.RandomState(1).rand(1, 6, 6, 2).astype(np.float32)
    conv = keras.layers.Conv2D(3, 3, padding="same", use_bias=False)
    deform = DeformableConv2D(3, 3, use_bias=False)
    deform(x)
    conv(x)
    deform.set_conv_weights(conv.kernel.numpy())
    w = deform.offset_conv.get_weights()
    w[1][0::2] = 1.0  # Δx = 1 for every tap
    deform.offset_conv.set_weights(w)
    shifted = np.concatenate([x[:, :, 1:], np.zeros_like(x[:, :, :1])], axis=2)
    # Column 0 differs: its left taps read x[:, :, 0] where the shifted image has zero padding.
    np.testing.assert_allclose(deform(x).numpy()[:, :, 1:], conv(shifted).numpy()[:, :, 1:], atol=1e-5)


@pytest.mark.parametrize("topology,block,inside", [("sat3", "cab", "deformable"), ("hourglass", "resnet", "none"),
                                                   ("unet", "hpm", "stn"), ("sat3", "inception", "none")])
def test_variants_build_and_train(topology, block, inside):
    arch, cfg = tiny(topology=topology, block=block, inside=inside)
    model = arch.build(cfg)
    x = tf.random.uniform((2, 32, 32, 3), seed=0)
    batch = {"points": tf.random.uniform((2, 68, 2), 0.2, 0.8, seed=1), "mask": tf.ones((2, 68))}
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss, parts = arch.loss(cfg, out, batch)
    assert out["heatmaps2"].shape == (2, 16, 16, 68) and out["landmarks"].shape == (2, 68, 2)
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    assert set(parts) == {"ce1", "ce2"}


def test_decode_recovers_points_from_target_heatmaps():
    pts = np.random.RandomState(2).uniform(0.1, 0.9, (3, 68, 2)).astype(np.float32)
    maps = gaussian_heatmaps(pts, 64, 64, 1.0)
    got = HeatmapDecode()(maps).numpy()
    # Argmax + quarter-pixel refinement: within 0.25 + rounding of a cell (1/64) of the truth.
    assert np.abs(got - pts).max() * 64 < 0.76


def test_coherent_loss_is_zero_for_an_equivariant_model():
    # "Model" = the Gaussian heatmaps of the true points: exactly equivariant to the transform.
    rng = np.random.RandomState(3)
    pts = rng.uniform(0.3, 0.7, (2, 68, 2)).astype(np.float32)
    angle = 0.3
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    affine = np.zeros((2, 2, 3), np.float32)
    affine[:, :, :2] = rot
    affine[:, :, 2] = 0.5 - rot @ np.array([0.5, 0.5], np.float32)  # rotate about the centre
    pts2 = np.einsum("ij,bnj->bni", rot, pts - 0.5) + 0.5
    logit = lambda p: tf.math.log(gaussian_heatmaps(p, 32, 32, 1.5) * 0.98 + 0.01) - tf.math.log(
        1 - (gaussian_heatmaps(p, 32, 32, 1.5) * 0.98 + 0.01))
    loss = float(coherent_loss(logit(pts), logit(pts2), affine))
    # An equivariant prediction leaves only bilinear resampling error; a wrong one is far larger.
    wrong = float(coherent_loss(logit(pts), logit(pts), affine))
    assert loss < 0.05 * wrong


def test_transform_heatmaps_mirror_swaps_channels():
    from tfalign.schemes import get_scheme
    perm = np.array(get_scheme("300w_68").flip_permutation)
    pts = np.random.RandomState(4).uniform(0.2, 0.8, (1, 68, 2)).astype(np.float32)
    mirror = np.array([[[-1, 0, 1], [0, 1, 0]]], np.float32)  # u → 1 - u
    pts2 = pts[:, perm].copy()
    pts2[..., 0] = 1 - pts2[..., 0]
    moved = transform_heatmaps(gaussian_heatmaps(pts, 32, 32, 1.0), mirror, perm[None])
    np.testing.assert_allclose(moved.numpy(), gaussian_heatmaps(pts2, 32, 32, 1.0).numpy(), atol=1e-4)


def test_twin_outputs_add_the_coherent_term():
    arch, cfg = tiny()
    model = arch.build(cfg)
    x = tf.random.uniform((1, 32, 32, 3), seed=0)
    out = model(x)
    out["twin"] = model(x[:, :, ::-1])
    eye = np.array([[[1, 0, 0], [0, 1, 0]]], np.float32)
    batch = {"points": tf.random.uniform((1, 68, 2), seed=1), "mask": tf.ones((1, 68)),
             "points2": tf.random.uniform((1, 68, 2), seed=2), "mask2": tf.ones((1, 68)), "affine": eye,
             "pair_index": np.arange(68)[None]}
    total, parts = arch.loss(cfg, out, batch)
    assert {"coherent", "ce1_twin", "ce2_twin"} <= set(parts)
    expected = sum(float(v) for k, v in parts.items() if k != "coherent") + 0.001 * float(parts["coherent"])
    assert float(total) == pytest.approx(expected, rel=1e-5)


def _numpy_decode(maps):
    b, h, w, n = maps.shape
    out = np.zeros((b, n, 2), np.float32)
    for i in range(b):
        for j in range(n):
            m = maps[i, :, :, j]
            y, x = np.unravel_index(np.argmax(m), m.shape)
            get = lambda yy, xx: m[yy, xx] if 0 <= yy < h and 0 <= xx < w else -1e9  # noqa: E731
            dx = 0.25 * np.sign(get(y, x + 1) - get(y, x - 1))
            dy = 0.25 * np.sign(get(y + 1, x) - get(y - 1, x))
            out[i, j] = [(x + dx + 0.5) / w, (y + dy + 0.5) / h]
    return out


def test_decode_matches_numpy_at_the_edges_and_per_sample():
    rng = np.random.default_rng(3)
    first = rng.uniform(0, 0.5, (6, 7, 8)).astype(np.float32)
    # The second sample's background is the first's mirrored in value (0.5 - v): at the same peaks its neighbour
    # differences have the opposite signs, so reading the other sample's maps changes the answer.
    maps = np.stack([first, 0.5 - first])
    peaks = [(0, 0), (0, 6), (5, 0), (5, 6), (2, 3), (0, 3), (3, 0), (4, 4)]  # corners, edges and the inside
    for j, (y, x) in enumerate(peaks):
        maps[:, y, x, j] = 1.0
    np.testing.assert_allclose(HeatmapDecode()(maps).numpy(), _numpy_decode(maps), atol=1e-6)


def test_a_peak_on_the_border_while_calibrating_leaves_the_int8_maps_intact():
    """The decode masked neighbours outside the map with -1e9, and the quantizer gives the maps, the gather and
    the select one scale: one calibration face peaking on the border made the maps' int8 scale 3.9e6 and every
    exported point (0, 0) (LFPW NME 152 % for a lite dense U-Net whose PTQ is 6.4 % now)."""
    from mobile_export import tflite as tfl
    from quantization import presets
    inp = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(3, 1, name="heatmaps")
    model = keras.Model(inp, HeatmapDecode(name="decode")(conv(inp)))
    conv.set_weights([np.eye(3, dtype=np.float32)[None, None], np.zeros(3, np.float32)])
    rng = np.random.default_rng(0)

    def maps(peaks):
        m = rng.uniform(-4, -1, (1, 8, 8, 3)).astype(np.float32)
        for j, (y, x) in enumerate(peaks):
            m[0, y, x, j] = 1.0
        return m

    calibration = [maps([(0, 0), (3, 7), (4, 4)])] + [maps([(2, 3), (5, 5), (4, 1)]) for _ in range(3)]
    runner = tfl.Runner(tfl.convert(model, preset=presets.for_int8(lambda: iter([[c] for c in calibration]))))
    for peaks in ([(2, 3), (5, 5), (4, 1)], [(0, 4), (7, 7), (3, 0)]):
        x = maps(peaks)
        np.testing.assert_allclose(runner(x), model(x).numpy(), atol=1e-6)


def test_deformable_sampling_and_decode_export_without_slices_or_padded_map_copies():
    """The exported graph reads offsets as two maps and the decode's neighbours by index: no STRIDED_SLICE of the
    interleaved offsets (it ran outside XNNPACK) and no PAD/TRANSPOSE of the N heatmaps (10 % of the float time)."""
    from mobile_export import tflite as tfl
    from mobile_export.profile.perop import graph_ops, read_model
    arch, cfg = tiny()
    model = arch.build(cfg)
    inf = arch.inference_model(cfg, model)
    inp = keras.Input((32, 32, 3), batch_size=1)
    ops = graph_ops(read_model(tfl.convert(keras.Model(inp, inf(inp)))))
    names = [o["op"] for o in ops]
    # The decode's own slices of its [N, 4] neighbour values stay (68 elements each).
    assert [o["name"] for o in ops if o["op"] == "STRIDED_SLICE" and np.prod(o["shape"]) > 68] == []
    assert names.count("GATHER") == 2 * 4 + 1  # four corners per deformable layer, one for the decode
    assert names.count("PAD") == 2 and "TRANSPOSE" not in names  # the deformable layers' zero rings only


def test_serialization_and_tflite_builtin_conversion(tmp_path):
    arch, cfg = tiny()
    keras.utils.set_random_seed(0)
    model = arch.build(cfg)
    # An untrained head (stddev 1e-3) makes nearly flat heatmaps whose argmax is a tie that TFLite and TF may break
    # differently; a unit-scale head gives every map a peak.
    head = model.get_layer("u2_heatmaps")
    kernel, bias = head.get_weights()
    head.set_weights([np.random.default_rng(0).normal(size=kernel.shape).astype(np.float32), bias])
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.models.load_model(path)
    x = np.random.default_rng(1).uniform(size=(1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x)["heatmaps2"], again(x)["heatmaps2"], atol=1e-5)
    inf = arch.inference_model(cfg, model)
    inp = keras.Input((32, 32, 3), batch_size=1)
    conv = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, inf(inp)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=conv.convert())
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    maps = np.sort(model(x)["heatmaps2"].numpy().reshape(-1, head.filters), axis=0)
    clear = maps[-1] - maps[-2] > 1e-3  # landmarks whose argmax is not a near-tie
    assert clear.mean() > 0.8
    np.testing.assert_allclose(it.get_tensor(it.get_output_details()[0]["index"])[0][clear], inf(x)[0].numpy()[clear],
                               atol=1e-3)


@pytest.mark.parametrize("topology,block,inside", [("hourglass", "resnet", "none"), ("sat3", "cab", "deformable")])
def test_heatmaps_start_at_the_target_prior(topology, block, inside):
    # Un-normalised residual branches used to add up (stack-2 logits of std ~50 in the hourglass baseline), and
    # p = 0.5 everywhere costs H·W·ln 2 per map: the first steps only shrank the logits.
    arch, cfg = tiny(topology=topology, block=block, inside=inside, num_stacks=2)
    keras.utils.set_random_seed(0)
    model = arch.build(cfg)
    x = tf.random.normal((2, 32, 32, 3), seed=0)
    out = model(x, training=True)
    prior = 2 * np.pi * cfg.heatmap_sigma ** 2 / 16 ** 2
    for k in ("heatmaps1", "heatmaps2"):
        p = tf.sigmoid(out[k]).numpy()
        assert abs(p.mean() - prior) < 0.5 * prior and p.max() < 0.2, (k, p.mean(), p.max())
    batch = {"points": tf.random.uniform((2, 68, 2), 0.2, 0.8, seed=1), "mask": tf.ones((2, 68))}
    _, parts = arch.loss(cfg, out, batch)
    assert float(parts["ce2"]) < 0.25 * 16 * 16 * np.log(2)  # (64×64 maps: ~50 vs 2839)


def test_bad_config():
    with pytest.raises(ValueError, match="topology"):
        DenseUNetConfig(topology="dla")
    with pytest.raises(ValueError, match="divisible"):
        DenseUNetConfig(channels=30)


def test_distill_loss_is_the_heatmap_kl_to_the_teacher():
    arch, config = resolve("dense_unet")
    rng = np.random.default_rng(0)
    teacher = tf.constant(rng.normal(-4, 3, (2, 8, 8, 3)).astype(np.float32))
    student = tf.constant(rng.normal(-4, 3, (2, 8, 8, 3)).astype(np.float32))
    assert float(arch.distill_loss(config, "heatmaps2", teacher, teacher)) == pytest.approx(0.0, abs=1e-5)
    p, q = tf.sigmoid(teacher).numpy(), tf.sigmoid(student).numpy()
    kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))  # Bernoulli KL(teacher || student) per cell
    want = kl.sum(axis=(1, 2)).mean()
    assert float(arch.distill_loss(config, "heatmaps1", student, teacher)) == pytest.approx(want, rel=1e-4)
    assert arch.distill_loss(config, "landmarks", student, teacher) is None  # the generic term


# --- shipped weights (tfalign/weights/dense_unet_w64) --------------------------------------------------------------
def test_shipped_dense_unet_w64_is_its_preset_and_loads_without_data():
    from tfalign.models.base import load_pretrained
    arch, config, model = load_pretrained("dense_unet_w64")
    assert arch.name == "dense_unet" and config == resolve("dense_unet_w64")[1]
    assert config.channels == 64 and config.coherent_weight == 0.0 and not config.input.pair
    pts = model(np.zeros((1, 128, 128, 3), np.float32))["landmarks"].numpy()
    assert pts.shape == (1, 68, 2) and np.all(np.isfinite(pts))


@pytest.mark.needs_data
def test_shipped_dense_unet_w64_aligns_held_out_real_faces(shared_data):
    from tfalign.data.spec import load_records
    from tfalign.models.base import load_pretrained
    from tfalign.training import evaluation
    _, config, model = load_pretrained("dense_unet_w64")
    val = load_records(f"300w:{shared_data / 'lfpw' / 'trainset'}#val")[:16]
    pred = evaluation.predict_keras(evaluation.landmark_fn(model), val, config.input, batch_size=16)
    true, mask = evaluation.targets(val, config.input.schemes)
    nme = evaluation.score(pred, true, mask, config.input.schemes)["primary"]
    # Model card: 4.24 % on all 72 #val faces; a broken load or preprocessing mismatch gives > 20 %.
    assert nme < 0.06, f"shipped weights: inter-ocular NME {100 * nme:.2f} % on 16 held-out LFPW faces"


def test_int8_exports_decode_the_heatmaps_in_float():
    """HeatmapDecode stays float in full-int8 models (keep_float_in_int8): decoded from int8 maps the shipped
    dense_unet_w64 lost 0.08 NME points more."""
    from ai_edge_litert.interpreter import Interpreter
    from mobile_export import tflite as tfl
    from quantization import presets
    arch, cfg = tiny()
    keras.utils.set_random_seed(0)
    inf = arch.inference_model(cfg, arch.build(cfg))
    rng = np.random.default_rng(0)
    rep = lambda: ([rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)] for _ in range(4))  # noqa: E731
    it = Interpreter(model_content=tfl.convert(inf, preset=presets.for_int8(rep)))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = {o["op_name"]: o for o in it._get_ops_details()}
    assert tensors[ops["ARG_MAX"]["inputs"][0]]["dtype"] == np.float32
    assert tensors[ops["CONV_2D"]["inputs"][0]]["dtype"] == np.int8  # the rest is still int8
