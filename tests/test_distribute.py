"""tf.distribute: two CPU workers on 127.0.0.1 (MultiWorkerMirroredStrategy, TF_CONFIG, RING) train the same
model as one worker on the same global batch."""
import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

TIMEOUT = 420  # seconds for the whole two-worker run: generous for a shared 2-core machine, but bounded
COMMON = ["--model", "tiny_test", "--data", "synthetic:32:mtfl_5", "--val", "synthetic:8:mtfl_5:3", "--epochs", "2",
          "--steps-per-epoch", "3", "--batch-size", "8", "--seed", "5", "--no-progress"]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _train_cmd(*extra):
    return [sys.executable, "-m", "tfalign.train", *COMMON, *extra]


def _weights(run_dir):
    from tfalign.training import load_model_dir
    _, _, model = load_model_dir(str(run_dir), which="last")
    return [w.copy() for w in model.get_weights()]


def test_two_cpu_workers_match_single_worker_on_the_same_global_batch(tmp_path):
    multi, single = tmp_path / "multi", tmp_path / "single"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    try:
        for i in range(2):
            env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
            procs.append(subprocess.Popen(_train_cmd("--strategy", "multiworker", "--out", str(multi)), env=env,
                                          cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        logs = [p.communicate(timeout=TIMEOUT)[1] for p in procs]
    finally:
        for p in procs:  # never leave a worker behind, whatever failed
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"worker {i} failed:\n{log[-3000:]}"
    assert "epoch 2/2" in logs[0]  # the chief reports
    assert "worker 1/2: epoch 2 done at step 6" in logs[1]  # the other worker stepped as many times
    run = json.loads((multi / "config.json").read_text())
    assert run["num_workers"] == 2 and run["num_replicas"] == 2 and run["strategy"] == "multiworker"

    from tfalign.train import main
    assert main([*COMMON, "--out", str(single)]) == 0  # the reference: one worker, default strategy, in-process
    hist_m = json.loads((multi / "history.json").read_text())["epochs"]
    hist_s = json.loads((single / "history.json").read_text())["epochs"]
    assert [e["step"] for e in hist_m] == [e["step"] for e in hist_s] == [3, 6]
    np.testing.assert_allclose([e["train"]["loss"] for e in hist_m], [e["train"]["loss"] for e in hist_s],
                               rtol=1e-4)
    before = _weights(single)
    # atol: the last conv's bias has a zero true gradient (soft-argmax is shift invariant), so Adam turns float
    # noise into steps of ~1e-5 there; every real weight moved by ~1e-2 (checked below).
    for a, b in zip(_weights(multi), before):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    # The run moved away from its initialisation, so the comparison above is not trivially true.
    from tfalign.training.runconfig import resolve_model
    from tfalign._keras import keras
    keras.utils.set_random_seed(5)
    arch, config = resolve_model("tiny_test", run["config"])
    init = arch.build(config).get_weights()
    assert max(float(np.abs(a - b).max()) for a, b in zip(init, before)) > 1e-3


def test_multiworker_without_tf_config_is_a_usage_error(tmp_path, monkeypatch, capsys):
    from tfalign.train import main
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert main([*COMMON, "--strategy", "multiworker", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TF_CONFIG" in err[0]
    assert not (tmp_path / "r").exists()


def test_malformed_tf_config_is_a_usage_error(tmp_path, monkeypatch, capsys):
    from tfalign.train import main
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    assert main([*COMMON, "--strategy", "multiworker", "--out", str(tmp_path / "r")]) == 2
    assert "TF_CONFIG is not a valid cluster spec" in capsys.readouterr().err


@pytest.mark.parametrize("tf_config,chief", [
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_chief_is_worker_zero_or_the_chief_task(monkeypatch, tf_config, chief):
    from tfalign.training.distribute import is_chief_from_env
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert is_chief_from_env("multiworker") is chief
    assert is_chief_from_env("default") is True


def test_mirrored_strategy_trains_and_is_recorded(tmp_path):
    """On this GPU-less machine MirroredStrategy has one CPU replica; the path is the one used on a GPU box."""
    from tfalign.train import main
    out = tmp_path / "run"
    assert main([*COMMON, "--epochs", "1", "--strategy", "mirrored", "--out", str(out)]) == 0
    run = json.loads((out / "config.json").read_text())
    assert run["strategy"] == "mirrored" and run["num_replicas"] >= 1
    assert json.loads((out / "history.json").read_text())["epochs"][0]["step"] == 3
