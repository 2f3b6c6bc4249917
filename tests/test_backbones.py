"""Backbone registry: shapes per stride, parameter counts, input normalisation, local weights files."""
import numpy as np
import pytest

from tfalign._keras import keras
from tfalign.models import backbones as bb


def _model(name, size=64, channels=3, **kwargs):
    image = keras.Input((size, size, channels))
    return keras.Model(image, bb.build_backbone(name, image, **kwargs))


def test_registry_lists_the_four_backbones():
    assert {"resnet18", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"} <= set(bb.list_backbones())


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown backbone 'resnet19'.*resnet18"):
        _model("resnet19")


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        bb.register_backbone("resnet18")(lambda x: x)


@pytest.mark.parametrize("name,channels", [("resnet18", 512), ("mobilenet_v2", 1280),
                                           ("mobilenet_v3_small", 576), ("mobilenet_v3_large", 960)])
def test_default_output_stride_is_32(name, channels):
    assert _model(name, 64).output.shape[1:] == (2, 2, channels)


@pytest.mark.parametrize("stride,side", [(16, 8), (64, 2), (128, 1)])
def test_paper_extra_layers_change_the_stride(stride, side):
    m = _model("mobilenet_v3_small", 128, stride=stride, extra_channels=32)
    assert m.output.shape[1:] == (side, side, 32)
    kinds = {type(l).__name__ for l in m.layers if l.name.startswith("extra_")}
    assert ("Conv2DTranspose" in kinds) == (stride == 16)


def test_bad_stride_and_indivisible_input_are_refused():
    with pytest.raises(ValueError, match="stride must be one of"):
        _model("resnet18", 64, stride=8)
    with pytest.raises(ValueError, match="divisible by stride 128"):
        _model("resnet18", 64, stride=128)


def test_resnet18_trainable_parameters_match_torchvision():
    # torchvision resnet18 without its fc layer has 11,176,512 parameters: ported ImageNet weights line up.
    m = _model("resnet18", 64)
    trainable = sum(int(np.prod(w.shape)) for w in m.trainable_weights)
    assert trainable == 11_176_512


def test_mobilenet_v3_has_no_builtin_preprocessing():
    m = _model("mobilenet_v3_large", 64)
    assert not [l for l in m.layers if isinstance(l, keras.layers.Rescaling)]


def test_input_normalisation_is_mapped_onto_the_backbone_range():
    # The same pixels normalised two ways must give the same features once the weights are shared.
    a = _model("mobilenet_v3_small", 64)  # InputSpec default (127.5, 127.5) = the backbone's own range
    b = _model("mobilenet_v3_small", 64, input_mean=0.0, input_std=255.0)
    assert [l for l in b.layers if isinstance(l, keras.layers.Rescaling)]
    b.set_weights(a.get_weights())
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(a.predict((pixels - 127.5) / 127.5, verbose=0), b.predict(pixels / 255.0, verbose=0),
                               rtol=1e-4, atol=1e-4)


def test_grayscale_input():
    assert _model("resnet18", 64, channels=1).output.shape[-1] == 512


def test_local_weights_file_is_loaded_by_layer_name(tmp_path):
    src = _model("resnet18", 64)
    path = str(tmp_path / "r18.h5")
    src.save_weights(path)
    dst = _model("resnet18", 64, weights=path)
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(src.predict(x, verbose=0), dst.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_weights_file_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="weights file not found: .*missing.h5"):
        _model("resnet18", 64, weights=str(tmp_path / "missing.h5"))
    other = str(tmp_path / "mbv3.h5")
    _model("mobilenet_v3_small", 64).save_weights(other)
    with pytest.raises(ValueError, match="mbv3.h5: no layer name matches"):
        _model("resnet18", 64, weights=other)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="junk.h5: not a Keras .h5 weights file"):
        _model("resnet18", 64, weights=str(junk))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_large"])
def test_batchnorm_momentum_is_pytorchs_everywhere(name):
    # keras.applications' 0.999 leaves the moving statistics near their initial values after a short run.
    m = _model(name, 64, stride=64, extra_channels=8)
    momenta = {l.momentum for l in m.layers if isinstance(l, keras.layers.BatchNormalization)}
    assert momenta == {bb.BN_MOMENTUM} == {0.9}


def _random_bn_statistics(model, seed=0):
    # Fresh BNs are identities; non-trivial statistics make the comparisons below mean something.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 1, c), rng.normal(0, 0.5, c),
                               rng.uniform(0.5, 2.0, c)])


def test_mobilenet_v3_activations_are_named_registered_layers():
    m = _model("mobilenet_v3_small", 32)
    kinds = [type(l).__name__ for l in m.layers]
    assert "TFOpLambda" not in kinds and "HardSwish" in kinds and "HardSigmoid" in kinds
    assert "expanded_conv_3_expand_hard_swish" in {l.name for l in m.layers}
    for cls in (bb.HardSwish, bb.HardSigmoid):
        layer = cls(name="x")
        assert keras.utils.get_registered_object(f"tfalign>{cls.__name__}") is cls
        clone = keras.layers.deserialize(keras.layers.serialize(layer))
        assert type(clone) is cls and clone.name == "x"


@pytest.mark.parametrize("app,name", [(keras.applications.MobileNetV3Small, "mobilenet_v3_small"),
                                      (keras.applications.MobileNetV3Large, "mobilenet_v3_large")])
def test_named_activations_compute_what_keras_applications_computes(app, name):
    # Same weight order and shapes as keras.applications' own build (hard-swish as TFOpLambdas), same outputs.
    ours = _model(name, 64)
    ref = app(input_shape=(64, 64, 3), include_top=False, weights=None, include_preprocessing=False)
    assert "TFOpLambda" in {type(l).__name__ for l in ref.layers}
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in ref.get_weights()]
    _random_bn_statistics(ours)
    ref.set_weights(ours.get_weights())
    x = np.random.default_rng(2).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(ours(x).numpy(), ref(x).numpy(), rtol=1e-4, atol=1e-4)


def test_shipped_pipnet_mbv3_weights_give_the_same_outputs(monkeypatch):
    import contextlib
    from tfalign.models.base import WEIGHTS_FILE, load_pretrained, pretrained_folder
    if not pretrained_folder("pipnet_mbv3"):
        pytest.skip("no shipped pipnet_mbv3 weights")
    arch, config, model = load_pretrained("pipnet_mbv3")
    # The model as it was built before the named layers: keras.applications' own hard-swish.
    monkeypatch.setattr(bb, "_named_mobilenet_v3_activations", contextlib.nullcontext)
    legacy = arch.build(config)
    assert "TFOpLambda" in {type(l).__name__ for l in legacy.layers}
    with np.load(f"{pretrained_folder('pipnet_mbv3')}/{WEIGHTS_FILE}") as data:
        legacy.set_weights([data[k].astype(np.float32) for k in sorted(data.files)])
    x = np.random.default_rng(0).normal(size=(1, 256, 256, 3)).astype(np.float32)
    got, want = model(x, training=False), legacy(x, training=False)
    for key in want:
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-4, atol=1e-5)


def test_hard_swish_is_a_builtin_op_kept_float_between_int8_convolutions():
    from mobile_export import tflite
    from quantization import presets
    inp = keras.Input((16, 16, 4), batch_size=1)
    x = keras.layers.Conv2D(8, 1, name="c1")(inp)
    x = keras.layers.BatchNormalization(name="c1/BatchNorm")(x)  # a keras.applications-style name with "/"
    x = bb.HardSwish(name="c1_hard_swish")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw/depthwise")(x)
    x = bb.HardSwish(name="dw_hard_swish")(x)
    m = keras.Model(inp, keras.layers.Conv2D(4, 1, name="c2")(x))
    _random_bn_statistics(m)
    assert tflite.inspect(tflite.convert(m, preset=presets.for_float32()))["ops"]["HARD_SWISH"] == 2
    rng = np.random.default_rng(0)
    rep = lambda: (rng.normal(size=(1, 16, 16, 4)).astype(np.float32) for _ in range(8))  # noqa: E731
    info = tflite.inspect(tflite.convert(m, preset=presets.for_int8(rep)))
    # The HARD_SWISH ops are float; the conv and depthwise conv around them stay int8 (ops are found by layer
    # names holding "/"). The graph's last conv, fed by a float op, may stay float: the quantizer's choice.
    kinds = [op.split()[0] for op in info["float_ops"]]
    assert kinds.count("HARD_SWISH") == 2 and "DEPTHWISE_CONV_2D" not in kinds
    assert not [op for op in info["float_ops"] if "/c1/" in op or "dw/depthwise" in op]
    assert info["ops"]["DEQUANTIZE"] >= 2
