"""bench/pipnet_gpu.py, the parts that run without PyTorch: layer names, weight transport, the NRM matrix, and the
data pipeline fed with a plain namespace instead of InputSpec (the GPU machine has no TensorFlow)."""
import dataclasses
import importlib.util
import os

import numpy as np
import pytest

from tfalign.config import to_dict
from tfalign.models import pipnet
from tfalign.models.base import resolve

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "pipnet_gpu.py")
_spec = importlib.util.spec_from_file_location("pipnet_gpu", _PATH)
gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu)


def _small_r18():
    arch, config = resolve("pipnet_r18")
    config = dataclasses.replace(config, input=dataclasses.replace(config.input, height=64, width=64))
    return arch, config, arch.build(config)


def test_every_weighted_keras_layer_has_exactly_one_pytorch_module():
    _, _, model = _small_r18()
    weighted = {layer.name for layer in model.layers if layer.weights}
    names = list(gpu.keras_names().values())
    assert len(names) == len(set(names))
    assert set(names) == weighted


def test_weights_travel_in_chunks_and_load_by_name(monkeypatch):
    _, _, model = _small_r18()
    rng = np.random.default_rng(0)
    per_layer = {layer.name: [rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()]
                 for layer in model.layers if layer.weights}
    monkeypatch.setattr(gpu, "CHUNK_BYTES", 100_003)  # odd size: arrays straddle chunk boundaries
    index, chunks = gpu.pack(per_layer)
    assert len(chunks) > 3 and all(len(c) <= 100_003 for c in chunks)
    back = gpu.unpack(index, chunks)
    _, _, other = _small_r18()
    gpu.set_keras_weights(other, back)
    for name, arrays in per_layer.items():
        for got, want in zip(other.get_layer(name).get_weights(), arrays):
            np.testing.assert_allclose(got, want.astype(np.float16), rtol=0, atol=0)  # float16 transport
    with pytest.raises(ValueError, match="truncated"):
        gpu.unpack(index, chunks[:-1])
    back.pop("pip_score")
    with pytest.raises(ValueError, match=r"only Keras \['pip_score'\]"):
        gpu.set_keras_weights(other, back)


def test_nrm_matrix_matches_the_keras_decode():
    _, config = resolve("pipnet_r18")
    np.testing.assert_array_equal(gpu.merge_matrix(config.neighbors), pipnet.nrm_merge_matrix(config.neighbors))


def test_pipeline_samples_are_the_same_with_the_namespace_input_spec():
    from tfalign.data import pipeline
    from tfalign.data.spec import load_records
    _, config = resolve("pipnet_r18")
    spec = dataclasses.replace(config.input, height=64, width=64)
    ns = gpu.input_namespace(to_dict(spec))
    assert ns.num_points == spec.num_points == 68
    records = load_records("synthetic:3:300w_68")
    aug = pipeline.AugmentConfig()
    real = pipeline._Source(records, spec, aug, True, 7, False)  # noqa: SLF001
    plain = pipeline._Source(records, ns, aug, True, 7, False)  # noqa: SLF001
    for position in (0, 5):
        for a, b in zip(real.sample(1, position)[:3], plain.sample(1, position)[:3]):
            np.testing.assert_array_equal(a, b)


def test_inter_ocular_nme_uses_the_outer_eye_corners():
    truth = np.zeros((1, 68, 2), np.float32)
    truth[0, 45, 0] = 0.5  # outer corners 36 (at 0) and 45: distance 0.5
    pred = truth + np.array([0.05, 0.0], np.float32)
    np.testing.assert_allclose(gpu.inter_ocular_nme(pred, truth), [0.1], rtol=1e-6)
