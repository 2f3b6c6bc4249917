"""bench/pipnet_gpu.py, the parts that run without PyTorch: layer names, weight transport, the NRM matrix, and the
data pipeline fed with a plain namespace instead of InputSpec (the GPU machine has no TensorFlow)."""
import dataclasses

import numpy as np
import pytest

from tfalign.config import to_dict
from tfalign.models import pipnet
from tfalign.models.base import resolve

from bench_helpers import load_bench

gpu = load_bench("pipnet_gpu.py", "pipnet_gpu")


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


def _fake_gpu_run(folder, model, config, lfpw, **log_changes):
    """What `train` leaves for one recipe, made from a Keras model: its outputs are the reference to reproduce."""
    import json

    from tfalign.data import spec as data_spec
    from tfalign.training.data import make_dataset
    val = data_spec.split_records(data_spec.load_records(f"300w:{lfpw}"), "val")[:gpu.VERIFY_FACES]
    batch = next(iter(make_dataset(val, config.input, training=False, batch_size=len(val), seed=0)))
    order = np.argsort(batch["index"].numpy())
    out = model(batch["image"], training=False)
    per_layer = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    index, chunks = gpu.pack(per_layer)
    for k, c in enumerate(chunks):
        (folder / f"R_weights{k}.bin").write_bytes(c)
    log = {"index": index, "chunks": len(chunks), "recipe": {"optimizer": "adamw", "lr": 1e-3, "batch": 16,
                                                              "weight_decay": 0.05},
           "epochs": [{"epoch": 1, "loss": 1.0, "lr": 0.0, "seconds": 1.0, "val_nme": 0.5}], "seconds": 1.0,
           "steps_per_epoch": 45, "torch": "test", "device": "cpu", "command": ["train"],
           "input": json.loads(json.dumps(to_dict(config.input))), "neighbors": [list(r) for r in config.neighbors],
           "verify": {"landmarks": out["landmarks"].numpy()[order].tolist(),
                      "score": out["score"].numpy()[order].tolist()}}
    log.update(log_changes)
    (folder / "R_log.json").write_text(json.dumps(log))


@pytest.mark.needs_data
def test_import_writes_a_run_and_refuses_weights_or_settings_that_do_not_match(tmp_path, shared_data):
    from tfalign._keras import keras
    from tfalign.training import load_model_dir
    lfpw = shared_data / "lfpw" / "trainset"
    arch, config = resolve("pipnet_r18")
    keras.utils.set_random_seed(0)
    model = arch.build(config)
    # Cast to float16 first: that is what travels, so the reference must be computed from it.
    for layer in model.layers:
        layer.set_weights([w.astype(np.float16).astype(np.float32) for w in layer.get_weights()])
    src = tmp_path / "gpu"
    src.mkdir()
    _fake_gpu_run(src, model, config, lfpw)
    argv = ["import", "--from", str(src), "--recipe", "R", "--data", f"300w:{lfpw}"]
    assert gpu.main(argv + ["--out", str(tmp_path / "run")]) == 0
    _, run_config, loaded = load_model_dir(str(tmp_path / "run"))
    assert run_config.train.optimizer == "adamw" and run_config.train.schedule == "cosine"
    np.testing.assert_array_equal(loaded.get_layer("pip_score").get_weights()[0],
                                  model.get_layer("pip_score").get_weights()[0])

    # A layout mistake (here: two convolutions of the same shape swapped) changes the outputs: refused.
    a, b = model.get_layer("resnet18_layer1_0_conv1"), model.get_layer("resnet18_layer1_0_conv2")
    wa, wb = a.get_weights(), b.get_weights()
    a.set_weights(wb)
    b.set_weights(wa)
    bad = tmp_path / "bad"
    bad.mkdir()
    _fake_gpu_run(bad, model, config, lfpw)
    a.set_weights(wa)
    b.set_weights(wb)
    import json
    log = json.loads((src / "R_log.json").read_text())
    (bad / "R_log.json").write_text(json.dumps({**json.loads((bad / "R_log.json").read_text()),
                                                 "verify": log["verify"]}))
    with pytest.raises(SystemExit, match="do not reproduce"):
        gpu.main(["import", "--from", str(bad), "--recipe", "R", "--data", f"300w:{lfpw}", "--out",
                  str(tmp_path / "run_bad")])

    # A run trained against another neighbour table: refused before anything is written.
    other = tmp_path / "other"
    other.mkdir()
    table = [list(r) for r in config.neighbors]
    _fake_gpu_run(other, model, config, lfpw, neighbors=[r[::-1] for r in table])
    with pytest.raises(SystemExit, match="neighbors differs"):
        gpu.main(["import", "--from", str(other), "--recipe", "R", "--data", f"300w:{lfpw}", "--out",
                  str(tmp_path / "run_other")])
    assert not (tmp_path / "run_other").exists()
