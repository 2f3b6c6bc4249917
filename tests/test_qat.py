"""quantization.qat: tfmot QAT over the package's own layers, converted to an int8 TFLite that agrees with Keras."""
import re

import numpy as np
import pytest
import tensorflow as tf

from quantization import presets, qat
from tfalign import layers as tfa_layers
from tfalign._keras import keras, layers
from tfalign.models.base import InputSpec
from tfalign.models.mobile_two_stage import MobileTwoStageConfig, build_model


def _tiny_two_stage():
    # Every custom layer of the two-stage model (SumSoftArgmax, StopGradient, PointPatches, PatchesToGroups,
    # GroupConv2D, RefineOffset) plus bilinear UpSampling2D and Concatenate, at 32 px.
    keras.utils.set_random_seed(0)
    config = MobileTwoStageConfig(alpha=0.5, blocks=((8, 1, 1, 1), (16, 1, 2, 2), (16, 1, 2, 2)), heatmap_size=8,
                                  stage2_stride=4, stage2_channels=8, roi_size=4,
                                  input=InputSpec(height=32, width=32, schemes=("mtfl_5",)))
    return config, build_model(config)


def _inputs(n=8, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth random images (blurred noise), so the heatmaps have structure and the landmarks move with the input.
    x = rng.normal(size=(n, 8, 8, 3)).astype(np.float32)
    return np.clip(np.repeat(np.repeat(x, 4, axis=1), 4, axis=2), -1, 1)


def test_rules_cover_the_package_layers():
    _, model = _tiny_two_stage()
    cov = qat.coverage(model)
    kinds = {name: kind for kind, names in cov.items() for name in names}
    assert kinds["predict"] == "groupconv"
    assert kinds["roi_align"] == "float"  # the model's RoIAlign opts out (keep_float_in_int8), as in PTQ
    assert qat.rule(tfa_layers.PointPatches(4)) == qat.rule(tfa_layers.BilinearSample()) == "output"
    assert kinds["roi_groups"] == "output" and kinds["roi_centres"] == "noop"
    assert kinds["coarse"] == kinds["refine"] == kinds["landmarks"] == "float"
    assert kinds["hm1_up"] == kinds["stem_conv"] == kinds["hm1_concat"] == "registry"
    assert cov["none"] == ["image"]  # nothing is left float silently
    assert qat.rule(tfa_layers.SpatialSoftmax()) == "float"
    assert qat.rule(tfa_layers.SoftArgmax(normalize="sum")) == "float"


def test_qat_model_keeps_outputs_and_starts_close_to_float():
    _, model = _tiny_two_stage()
    q = qat.quantize_model(model)
    assert isinstance(q.output, dict) and set(q.output) == set(model.output)
    wrapped = {type(l).__name__ for l in q.layers}
    assert "QuantizeWrapperV2" in wrapped or "QuantizeWrapper" in wrapped
    x = _inputs(4)
    np.testing.assert_allclose(q(x)["landmarks"].numpy(), model(x)["landmarks"].numpy(), atol=0.03)


def test_qat_to_tflite_parity():
    from ai_edge_litert.interpreter import Interpreter

    from mobile_export import tflite
    _, model = _tiny_two_stage()
    # Peaky stage-1 maps, so the random model's landmarks follow the input instead of sitting at the centre.
    w = model.get_layer("heatmap1").get_weights()
    model.get_layer("heatmap1").set_weights([w[0] * 20.0, np.zeros_like(w[1])])
    q = qat.quantize_model(model)
    x = _inputs(8, seed=1)
    # A few forward passes in training mode set the moving-average activation ranges (what QAT training does).
    for _ in range(3):
        q(x, training=True)
    infer = keras.Model(q.inputs, q.output["landmarks"])
    assert qat.uncovered(infer) == []  # every layer has a rule: qat.convert ignores calibration faces
    data = qat.convert(infer)  # what ships: the converter's output after the float-layer and island rewrites
    assert qat.convert(infer, representative=lambda: iter(x[:1])) == data
    info = tflite.inspect(data)
    float_kinds = {op.split()[0] for op in info["float_ops"]}
    # Every convolution (the grouped predict conv included) and the bilinear resize run in int8.
    assert not float_kinds & {"CONV_2D", "DEPTHWISE_CONV_2D", "RESIZE_BILINEAR"}, info["float_ops"]
    assert info["ops"]["CONV_2D"] >= 8 and "QUANTIZE" in info["ops"]
    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    got = []
    for i in range(len(x)):
        it.set_tensor(inp["index"], x[i:i + 1])
        it.invoke()
        got.append(it.get_tensor(out["index"])[0])
    got = np.stack(got)
    ref = infer(x).numpy()
    assert ref.std(axis=0).mean() > 1e-3  # the landmarks depend on the input: parity is not trivially met
    np.testing.assert_allclose(got, ref, atol=0.02)  # 2 % of the crop side: int8 rounding inside the network


@keras.utils.register_keras_serializable("tfalign_test")
class _Experts(layers.Layer):
    """A custom layer holding its own convolution and dense layer, which QAT has no QuantizeConfig for (like
    Pose-Tree-MoE's expert stacks)."""

    def build(self, input_shape):
        self.conv, self.dense = layers.Conv2D(8, 3, padding="same"), layers.Dense(4)

    def call(self, x):
        return self.dense(tf.reduce_mean(tf.nn.relu(self.conv(x)), axis=[1, 2]))


def test_layers_qat_cannot_wrap_are_calibrated_when_faces_are_given():
    from ai_edge_litert.interpreter import Interpreter

    from mobile_export import tflite
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, _Experts(name="experts")(layers.Conv2D(6, 3, padding="same", activation="relu",
                                                                    name="conv")(inp)))
    assert "experts" in qat.coverage(model)["none"]
    x = _inputs(8)[:, ::4, ::4]
    q = qat.quantize_model(model, calibration=[x])
    # A distinctive trained range on the covered convolution's output: the calibrated export must keep it.
    for w in q.weights:
        if w.name.endswith("post_activation_max:0"):
            w.assign(5.1)
    assert qat.uncovered(q) == ["experts"]
    plain = qat.convert(q)
    mixed = qat.convert(q, representative=lambda: (x[i:i + 1] for i in range(len(x))))

    def kinds(data, dtype):
        info = tflite.inspect(data)
        return {op.split()[0] for op in info["float_ops"]} if dtype == "float" else set(info["ops"])

    assert {"CONV_2D", "FULLY_CONNECTED", "MEAN"} <= kinds(plain, "float")  # the experts stayed float
    assert not {"CONV_2D", "FULLY_CONNECTED", "MEAN"} & kinds(mixed, "float")
    assert tflite.inspect(mixed)["int8_coverage"] > tflite.inspect(plain)["int8_coverage"]
    it = Interpreter(model_content=mixed, num_threads=1)
    it.allocate_tensors()
    details = {d["name"]: d for d in it.get_tensor_details()}
    conv_out = [d for n, d in details.items() if "/quant_conv/" in n and "Relu" in n]
    assert conv_out and np.isclose(conv_out[0]["quantization"][0], 5.1 / 255, rtol=1e-3)
    inp_d, out_d = it.get_input_details()[0], it.get_output_details()[0]
    assert inp_d["dtype"] == np.float32 and out_d["dtype"] == np.float32  # QAT keeps float I/O by default
    got = []
    for i in range(len(x)):
        it.set_tensor(inp_d["index"], x[i:i + 1])
        it.invoke()
        got.append(it.get_tensor(out_d["index"])[0])
    ref = q(x).numpy()
    assert ref.std(axis=0).mean() > 1e-3
    np.testing.assert_allclose(np.stack(got), ref, atol=0.05 * np.abs(ref).max())


def test_tf_op_lambdas_stay_float_so_quantize_apply_can_clone_them():
    # MobileNetV3's hard-swish is written with tensor operators (TFOpLambda layers); tfmot's quantize_apply cannot
    # re-clone an *annotated* TFOpLambda (its input arrives as a list), so they are left float.
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same")(inp)
    h = layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)
    model = keras.Model(inp, {"landmarks": layers.Conv2D(2, 1)(layers.Multiply()([x, h]))})
    cov = qat.coverage(model)
    assert len([n for n in cov["none"] if n.startswith("tf.")]) == 2
    q = qat.quantize_model(model)
    x0 = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    for _ in range(3):  # the activation ranges are moving averages: what QAT training sets
        q(x0, training=True)
    ref = model(x0)["landmarks"].numpy()
    np.testing.assert_allclose(q(x0)["landmarks"].numpy(), ref, atol=0.05 * np.abs(ref).max())


def _hard_swish_model():
    from tfalign.models.backbones import HardSigmoid, HardSwish
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), batch_size=1)
    x = layers.BatchNormalization(name="bn")(layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inp))
    x = HardSwish(name="hs")(x)
    gate = HardSigmoid(name="gate")(layers.Conv2D(8, 1, name="excite")(layers.GlobalAveragePooling2D(keepdims=True)(x)))
    x = layers.Multiply(name="se")([x, gate])
    return keras.Model(inp, {"landmarks": layers.Conv2D(2, 1, name="c2")(x)})


def test_hard_swish_is_quantized_and_becomes_a_float_island():
    from mobile_export import tflite
    model = _hard_swish_model()
    cov = qat.coverage(model)
    kinds = {name: kind for kind, names in cov.items() for name in names}
    assert kinds["hs"] == kinds["gate"] == "output"
    q = qat.quantize_model(model)
    x = np.random.default_rng(0).normal(size=(1, 16, 16, 3)).astype(np.float32)
    for _ in range(3):
        q(x, training=True)
    plain = tflite.convert(keras.Model(q.input, q.output["landmarks"]), preset=presets.for_qat())
    assert tflite.inspect(plain)["ops"]["HARD_SWISH"] == 1
    assert "HARD_SWISH" not in " ".join(tflite.inspect(plain)["float_ops"])  # the slow int8 kernel
    island = qat.float_islands(plain)
    info = tflite.inspect(island)
    # Exactly one more float op (the gate's ADD/MUL may be float already: tfmot leaves a BN-less conv's output
    # unquantized, as in MobileNetV3's squeeze-excite; those are [1, 1, 1, C] tensors).
    before = [op.split()[0] for op in tflite.inspect(plain)["float_ops"]]
    assert sorted([op.split()[0] for op in info["float_ops"]]) == sorted(before + ["HARD_SWISH"])
    assert info["ops"]["DEQUANTIZE"] == tflite.inspect(plain)["ops"].get("DEQUANTIZE", 0) + 1
    a, b = tflite.Runner(plain)(x), tflite.Runner(island)(x)
    scale = np.abs(a).max()
    assert scale > 0
    np.testing.assert_allclose(b, a, atol=0.05 * scale)  # same int8 scales; the hard-swish is just exact now


def test_float_islands_refuses_unknown_ops():
    with pytest.raises(ValueError, match="'NOT_AN_OP' is not a TFLite builtin"):
        qat.float_islands(b"", ops=("NOT_AN_OP",))


def _assert_float_weights_round_trip(model):
    # float_weights copies the QAT copy's weights into a zeroed plain clone: it must give back model's own.
    q = qat.quantize_model(model)
    plain = keras.models.clone_model(model)
    for w in plain.weights:
        w.assign(np.zeros(w.shape, w.dtype.as_numpy_dtype))
    qat.float_weights(q, plain)
    for a, b in zip(plain.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_float_weights_undo_the_wrappers():
    model = _hard_swish_model()
    _assert_float_weights_round_trip(model)


def test_pre_activation_batch_norm_is_quantized_at_its_output():
    """tfmot folds a BN into the convolution before it and refuses any other BN; dense U-Net's blocks have them."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    c = layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    folded = layers.BatchNormalization(name="folded_bn")(c)
    shared = layers.Conv2D(4, 1, name="shared_conv")(folded)  # read by a BN and by the Add: not foldable
    after_shared = layers.BatchNormalization(name="after_shared_bn")(shared)
    pre = layers.BatchNormalization(name="pre_bn")(layers.Add(name="add")([after_shared, shared]))
    model = keras.Model(inp, layers.Conv2D(2, 1, name="out")(layers.ReLU(name="relu")(pre)))
    kinds = {name: kind for kind, names in qat.coverage(model).items() for name in names}
    assert kinds["folded_bn"] == "registry"
    assert kinds["pre_bn"] == kinds["after_shared_bn"] == "output"
    q = qat.quantize_model(model)  # tfmot raised "BatchNormalization is not supported" here before
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    q(x, training=True)  # the activation ranges start empty and are set by the first training-mode call
    ref = model(x).numpy()  # 8-bit activations: within a few steps of the output range
    np.testing.assert_allclose(q(x, training=False).numpy(), ref, atol=0.03 * np.ptp(ref))


def test_batch_norms_still_fold_when_the_model_is_also_used_elsewhere():
    """Layers shared with another graph (``tfalign.layers.with_group_impl``, run by every int8 export, re-calls a
    model's layers) have a node per graph; the BNs must still fold, else each becomes a float MUL/ADD island (the
    two-stage QAT model ran 9.8 ms instead of 0.9 ms after a PTQ export of the same model)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = layers.ReLU(name="relu")(layers.BatchNormalization(name="bn")(layers.Conv2D(4, 3, name="conv")(inp)))
    model = keras.Model(inp, layers.Conv2D(2, 1, name="out")(x))
    y = keras.Input((8, 8, 3))
    for name in ("conv", "bn", "relu", "out"):
        y = model.get_layer(name)(y)
    assert len(model.get_layer("bn")._inbound_nodes) == 2
    assert qat.foldable_norms(model) == {"bn"}
    assert "bn" in qat.coverage(model)["registry"]
    from mobile_export import tflite
    q = qat.quantize_model(model)
    q(np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32), training=True)
    ops = tflite.op_names(qat.convert(q))
    assert "MUL" not in ops and "ADD" not in ops and ops.count("CONV_2D") == 2, ops  # BN folded into the kernel


def _spatial_softmax_model():
    """DeCaFA's head in small: a conv's maps → SpatialSoftmax → SoftArgmax(normalize="none"); a second conv reads
    the same maps (as DeCaFA's chained transfer layers do), so their fake-quant range stays in the graph."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1), batch_size=1)
    maps = layers.Conv2D(2, 1, kernel_initializer=keras.initializers.Constant([[[[8.0, -8.0]]]]), name="maps")(inp)
    phi = tfa_layers.SpatialSoftmax(name="softmax")(maps)
    points = tfa_layers.SoftArgmax(normalize="none", name="argmax")(phi)
    side = layers.Conv2D(1, 1, name="side")(maps)
    return keras.Model(inp, {"landmarks": points, "side": side})


def test_float_kept_layers_run_float_after_qat_conversion():
    """The QAT converter made the spatial softmax and the soft-argmax FULLY_CONNECTED int8 whatever their
    QuantizeConfig said: a softmax over 256 cells at int8 scale 1/256 rounds to 0 and every point came out (0, 0).
    ``qat.float_layers`` (run by ``qat.convert``) rewrites those ops to float, as the PTQ export keeps them."""
    from mobile_export import tflite
    model = _spatial_softmax_model()
    x = np.zeros((1, 16, 16, 1), np.float32)
    x[0, 4, 11] = 1.0  # a bright pixel: map 0 peaks there, map 1 everywhere else
    q = qat.quantize_model(model)
    for _ in range(3):
        q(x, training=True)
    infer = keras.Model(q.inputs, q.output["landmarks"])
    raw = tflite.convert(infer, preset=presets.for_qat())
    assert "SOFTMAX" in {op.split()[0] for op in tflite.inspect(raw)["ops"]}
    fixed = qat.convert(infer)
    float_kinds = {op.split()[0] for op in tflite.inspect(fixed)["float_ops"]}
    assert {"SOFTMAX", "FULLY_CONNECTED"} <= float_kinds, tflite.inspect(fixed)["float_ops"]
    ref = q(x)["landmarks"].numpy()  # the QAT model's own simulation (its maps' range is ±6 after 3 steps)
    np.testing.assert_allclose(ref[0, 0], [(11 + 0.5) / 16, (4 + 0.5) / 16], atol=0.1)  # towards the peak
    got = tflite.Runner(fixed)(x)
    np.testing.assert_allclose(got, ref, atol=0.01)
    broken = tflite.Runner(raw)(x)
    assert np.abs(broken - ref).max() > 0.1  # what the rewrite fixes (if the converter changes, drop this line)
    assert "CONV_2D" not in " ".join(tflite.inspect(fixed)["float_ops"])  # the convolution stays int8


def test_calibrated_ranges_cover_activations_beyond_six():
    """tfmot's activation ranges start at [-6, 6] and move with decay 0.999: a tensor reaching 20 stays clipped
    through a short fine-tune (the dense U-Net's QAT model put every point in a corner). ``calibrate_ranges``
    starts each range where the float model's tensor is."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same", kernel_initializer=keras.initializers.Constant(2.5), name="c1")(inp)
    x = layers.ReLU(name="relu")(x)
    model = keras.Model(inp, layers.Conv2D(1, 1, kernel_initializer=keras.initializers.Constant(0.25),
                                           name="c2")(x))
    xs = np.random.default_rng(0).uniform(size=(8, 8, 8, 1)).astype(np.float32)
    ref = model(xs).numpy()
    assert ref.max() > 15  # the relu output (4x this) is far beyond 6
    default = qat.quantize_model(model)
    calibrated = qat.quantize_model(model, [xs[:4], xs[4:]])
    ranges = {re.sub(r"_\d+_max$", "_max", w.name.split(":")[0].split("/")[-1]): float(w.numpy())
              for w in calibrated.weights if w.name.endswith("max:0") and "kernel" not in w.name}
    assert ranges["output_max"] > 15 and 0.9 < ranges["quantize_layer_max"] < 1.01  # relu output, model input
    default_err = np.abs(default(xs).numpy() - ref).max()
    calibrated_err = np.abs(calibrated(xs).numpy() - ref).max()
    assert default_err > 5 and calibrated_err < min(0.1 * ref.max(), default_err / 5), (default_err, calibrated_err)
    with pytest.raises(ValueError, match="no calibration batches"):
        qat.calibrate_ranges(default, model, [])


def _separable_model():
    """Separable conv → BN → ReLU twice (the dense U-Net's `_sep`), one of them read by two layers and an output."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    a = layers.SeparableConv2D(8, 3, padding="same", use_bias=False, name="sep_a")(inp)
    a = layers.ReLU(name="relu_a")(layers.BatchNormalization(name="bn_a")(a))
    b = layers.SeparableConv2D(4, 3, strides=2, padding="same", name="sep_b")(a)
    c = layers.Conv2D(4, 1, name="head")(layers.ReLU(name="relu_b")(layers.BatchNormalization(name="bn_b")(b)))
    model = keras.Model(inp, {"out": c, "raw": b})
    for layer in model.layers:  # BN statistics far from (0, 1), so a pre-BN quantization error is amplified
        if isinstance(layer, layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([np.full(n, 3.0), np.zeros(n), np.zeros(n), np.full(n, 0.01)])
    return model


def test_split_separable_keeps_outputs_and_names_the_halves():
    model = _separable_model()
    split = qat.split_separable(model)
    names = [layer.name for layer in split.layers]
    assert "sep_a" not in names and {"sep_a_dw", "sep_a_pw", "sep_b_dw", "sep_b_pw"} <= set(names)
    assert isinstance(split.get_layer("sep_b_dw"), layers.DepthwiseConv2D)
    assert split.get_layer("sep_b_dw").strides == (2, 2) and split.get_layer("sep_b_pw").use_bias
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    ref, out = model(x), split(x)
    assert set(out) == {"out", "raw"}
    for k in ref:
        np.testing.assert_allclose(out[k].numpy(), ref[k].numpy(), rtol=1e-5, atol=1e-5)
    assert qat.split_separable(split) is split  # nothing left to split


def test_separable_halves_fold_their_batch_norm_and_start_close_to_float():
    model = _separable_model()
    split = qat.split_separable(model)
    kinds = {name: kind for kind, names in qat.coverage(split).items() for name in names}
    assert kinds["bn_a"] == "registry"  # follows a plain 1x1 convolution now: folded, no pre-BN fake quant
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 3)).astype(np.float32)
    q = qat.quantize_model(model, calibration=[x])
    pw = [layer for layer in q.layers if getattr(layer, "layer", layer).name == "sep_a_pw"][0]
    assert not [w for w in pw.weights if "post_activation" in w.name]  # the BN output is what gets quantized
    ref = model(x)["out"].numpy()
    np.testing.assert_allclose(q(x, training=False)["out"].numpy(), ref, atol=0.05 * np.ptp(ref))


def test_weight_ranges_start_at_the_weights():
    model = _hard_swish_model()
    q = qat.quantize_model(model)
    ranges = [(layer, v) for layer in q.layers for v in layer.weights if v.name.endswith("kernel_max:0")]
    assert ranges
    for layer, vmax in ranges:
        kernel = [w for w in layer.weights if w.name.split("/")[-1] in ("kernel:0", "depthwise_kernel:0")][0]
        # tfmot's initial value is 6; the symmetric range is the largest |weight| (per channel where per-axis)
        assert np.max(vmax.numpy()) == pytest.approx(np.max(np.abs(kernel.numpy())), rel=1e-5)


def test_float_weights_reassemble_separable_layers():
    model = _separable_model()
    _assert_float_weights_round_trip(model)


def _deformable_model():
    from tfalign.models.dense_unet import ReplicateChannels
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    deform = tfa_layers.DeformableConv2D(4, name="deform")
    x = ReplicateChannels(2, name="rep")(deform(x))
    model = keras.Model(inp, layers.Conv2D(2, 1, name="out")(x))
    kernel, bias = deform.offset_conv.get_weights()  # zero at init: give the taps somewhere to move
    deform.offset_conv.set_weights([np.random.default_rng(0).normal(0, 0.3, kernel.shape).astype(np.float32), bias])
    return model


def test_deformable_convolution_is_quantized_and_its_inside_calibrated():
    from mobile_export import tflite
    model = _deformable_model()
    kinds = {name: kind for kind, names in qat.coverage(model).items() for name in names}
    assert kinds["deform"] == "deformable" and kinds["rep"] == "noop"
    x = _inputs(8)[:, ::4, ::4]
    q = qat.quantize_model(model, calibration=[x])
    assert qat.uncovered(q) == [] and qat.calibrated_inside(q) == ["deform"]
    wrapper = q.get_layer("quant_deform")
    names = {w.name.split("/")[-1].split(":")[0] for w in wrapper.weights}
    assert {"kernel_min", "kernel_max", "output_min", "output_max"} <= names  # the matrix and the output
    # The fake-quantized combining matrix is what the layer computes with: its output sits on the int8 grid.
    ref = model.get_layer("deform")
    probe_f = keras.Model(model.inputs, ref.output)
    probe_q = keras.Model(q.inputs, wrapper.output)
    assert not np.allclose(probe_q(x).numpy(), probe_f(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(probe_q(x).numpy(), probe_f(x).numpy(), atol=0.05 * np.abs(probe_f(x)).max())
    rep = lambda: (x[i:i + 1] for i in range(len(x)))  # noqa: E731
    plain, mixed = qat.convert(q), qat.convert(q, representative=rep)
    float_kinds = {op.split()[0] for op in tflite.inspect(mixed)["float_ops"]}
    # Covered but not whole: the faces are used, so the sampling GATHERs and the matmul run in int8 too.
    assert not {"CONV_2D", "FULLY_CONNECTED", "GATHER_ND", "GATHER"} & float_kinds, float_kinds
    assert tflite.inspect(mixed)["int8_coverage"] > tflite.inspect(plain)["int8_coverage"]
    got = tflite.Runner(mixed).batch(x)
    want = q(x).numpy()
    assert want.std(axis=0).mean() > 1e-3
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())


def test_float_weights_tell_apart_sublayer_variables_of_the_same_name():
    # DeformableConv2D's offset convolution and combining matrix both hold a "kernel" and a "bias".
    model = _deformable_model()
    _assert_float_weights_round_trip(model)


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_batch_norms_keep_their_statistics_while_the_convolutions_train(freeze):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    folded = layers.BatchNormalization(name="folded_bn")(layers.Conv2D(4, 3, padding="same", name="conv")(inp))
    pre = layers.BatchNormalization(name="pre_bn")(layers.Add(name="add")([folded, layers.Conv2D(4, 1, name="c1")(inp)]))
    model = keras.Model(inp, layers.Conv2D(2, 1, name="out")(layers.ReLU(name="relu")(pre)))
    q = qat.quantize_model(model, freeze_bn=freeze)
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(8, 8, 8, 3)).astype(np.float32)  # far from BN's (0, 1) start
    q(x, training=True)

    def state(*names):
        return {w.name: w.numpy().copy() for w in q.weights if w.name.split("/")[-1].split(":")[0] in names}

    stats0, trained0 = state("moving_mean", "moving_variance"), state("gamma", "kernel")
    assert len(stats0) == 4 and len(trained0) == 5  # 2 BNs' statistics; their γ and 3 convolution kernels
    q.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    q.fit(x, np.ones((8, 8, 8, 2), np.float32), batch_size=4, epochs=1, verbose=0)
    moved = [k for k, v in state("moving_mean", "moving_variance").items() if not np.allclose(v, stats0[k])]
    assert len(moved) == (0 if freeze else 4), moved  # frozen: both BNs' statistics stay; otherwise all move
    assert all(not np.allclose(v, trained0[k]) for k, v in state("gamma", "kernel").items())  # γ still trains
    assert qat.freeze_batch_norms(q) == 2  # both BNs found, each inside its tfmot wrapper
