"""python -m tfalign.train: argument checking, what a run writes, exact resume after a crash and after kill -9."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = ["--data", "synthetic:24:mtfl_5", "--val", "synthetic:8:mtfl_5:3"]
TINY = ["--model", "tiny_test", *DATA, "--batch-size", "8", "--no-progress"]


def _main(argv):
    from tfalign.train import main
    return main([str(a) for a in argv])


def _last_weights(run_dir):
    from tfalign.training import load_model_dir
    return load_model_dir(str(run_dir), which="last")[2].get_weights()


# ---------------------------------------------------------------------------------------------- bad input

def test_help_explains_every_flag():
    out = subprocess.run([sys.executable, "-m", "tfalign.train", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0
    for flag in ("--model", "--config", "--set", "--data", "--val", "--epochs", "--out", "--resume", "--seed",
                 "--batch-size", "--strategy", "--steps-per-epoch", "--log-every", "--no-progress", "--init"):
        assert flag in out.stdout


@pytest.mark.parametrize("argv,needle", [
    (["--model", "no_such_model", *DATA, "--epochs", 1], "unknown model 'no_such_model'"),
    (["--model", "tiny_test", "--data", "bogus:1", "--val", "synthetic:4:mtfl_5", "--epochs", 1], "--data bogus:1"),
    (["--model", "tiny_test", "--data", "synthetic:0", "--val", "synthetic:4:mtfl_5", "--epochs", 1],
     "--data synthetic:0: no faces"),
    (["--model", "tiny_test", "--set", 'input.schemes=["300w_68"]', "--data", "synthetic:4",
      "--val", "synthetic:4:mtfl_5", "--epochs", 1], "--val synthetic:4:mtfl_5: scheme mtfl_5"),
    (["--model", "tiny_test", *DATA, "--epochs", 1, "--set", "train.nope=1"], "unknown config field 'train.nope'"),
    (["--model", "tiny_test", *DATA, "--epochs", 1, "--set", "train.optimizer=adagrad"], "unknown optimizer"),
    (["--model", "tiny_test", *DATA, "--epochs", 1, "--set", "novalue"], "expected key=value"),
    (["--model", "tiny_test", *DATA, "--epochs", 0], "--epochs: must be > 0"),
    (["--model", "tiny_test", "--epochs", 1], "missing --data, --val"),
    (["--model", "tiny_test", "--data", "synthetic:4:mtfl_5", "--val", "synthetic:4:mtfl_5", "--epochs", 1,
      "--batch-size", 8], "--batch-size 8: larger than the 4 training faces"),
    (["--model", "tiny_test", *DATA, "--val", DATA[-1], "--epochs", 1], "given more than once"),
    (["--model", "tiny_test", *DATA, "--epochs", 1, "--init", "/no/such/run"], "--init /no/such/run: not found"),
    (["--model", "tiny_test", *DATA, "--epochs", 1, "--init", "pretrained"],
     "--init pretrained: no trained weights ship for model 'tiny_test'"),
])
def test_bad_input_is_one_line_and_exit_2_before_training(tmp_path, capsys, argv, needle):
    out = tmp_path / "run"
    assert _main([*argv, "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tfalign.train: error:"), err
    assert needle in err[0]
    assert not (out / "config.json").exists()


def test_unwritable_out_dir(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert _main([*TINY, "--epochs", 1, "--out", blocker / "run"]) == 2
    assert "cannot write there" in capsys.readouterr().err


def test_resume_needs_a_run_with_a_checkpoint(tmp_path, capsys):
    assert _main(["--out", tmp_path / "nothing", "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err
    # A run killed during its first epoch has a config.json but no checkpoint yet.
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.json").write_text(json.dumps({"model": "tiny_test", "config": {}, "data": [], "val": [],
                                                     "epochs": 1, "batch_size": 8}))
    assert _main(["--out", started, "--resume"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- a full run

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    assert _main([*TINY, "--epochs", 3, "--steps-per-epoch", 3, "--seed", 3, "--log-every", 1, "--out", out]) == 0
    return out


def test_run_records_everything_to_reproduce_it(run_dir):
    run = json.loads((run_dir / "config.json").read_text())
    assert run["model"] == "tiny_test" and run["architecture"] == "tiny_test"
    assert run["data"] == ["synthetic:24:mtfl_5"] and run["val"] == ["synthetic:8:mtfl_5:3"]
    assert run["seed"] == 3 and run["epochs"] == 3 and run["batch_size"] == 8 and run["steps_per_epoch"] == 3
    assert run["config"]["train"]["batch_size"] == 8 and run["config"]["input"]["schemes"] == ["mtfl_5"]
    assert run["versions"]["tensorflow"] and run["command"][1:3] == ["-m", "tfalign.train"]
    history = json.loads((run_dir / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    assert [e["step"] for e in history["epochs"]] == [3, 6, 9]
    for e in history["epochs"]:
        assert np.isfinite(e["train"]["loss"]) and e["train"]["point"] == pytest.approx(e["train"]["loss"])
        m = e["val"]["synthetic:8:mtfl_5:3"]["mtfl_5"]
        assert set(m) == {"inter_ocular", "inter_pupil", "bbox", "diagonal"}
        assert e["val_nme"] == m["inter_ocular"]["nme"]
    assert len(history["sessions"]) == 1 and history["sessions"][0]["start_epoch"] == 1


def test_keeps_last_and_best_checkpoints_only(run_dir):
    history = json.loads((run_dir / "history.json").read_text())["epochs"]
    best = min(history, key=lambda e: e["val_nme"])
    ckpt = run_dir / "checkpoints"
    assert json.loads((ckpt / "last.json").read_text())["epoch"] == 3
    assert json.loads((ckpt / "best.json").read_text())["epoch"] == best["epoch"]
    assert sorted(p.name for p in ckpt.iterdir() if p.is_dir()) == sorted({f"epoch-{best['epoch']:04d}",
                                                                           "epoch-0003"})


def test_best_model_reproduces_its_validation_nme(run_dir):
    from tfalign.data.spec import load_records
    from tfalign.training import load_model_dir
    from tfalign.training.evaluation import landmark_fn, predict_keras, score, targets
    history = json.loads((run_dir / "history.json").read_text())["epochs"]
    best = min(history, key=lambda e: e["val_nme"])
    arch, config, model = load_model_dir(str(run_dir))
    records = load_records("synthetic:8:mtfl_5:3")
    pred = predict_keras(landmark_fn(model), records, config.input, 8)
    result = score(pred, *targets(records, config.input.schemes), config.input.schemes)
    assert result["primary"] == pytest.approx(best["val_nme"], rel=1e-5)
    assert arch.name == "tiny_test"


def test_tensorboard_has_step_epoch_and_validation_scalars(run_dir):
    from tfalign._keras import tf
    tags = set()
    for sub in ("train", "val"):
        for f in (run_dir / "tensorboard" / sub).iterdir():
            for event in tf.compat.v1.train.summary_iterator(str(f)):
                tags.update(v.tag for v in event.summary.value)
    assert {"step/loss", "epoch/loss", "epoch/learning_rate",
            "synthetic:8:mtfl_5:3/mtfl_5/inter_ocular/nme"} <= tags


def test_load_model_dir_errors_name_the_folder(tmp_path):
    from tfalign.training import load_model_dir
    with pytest.raises(ValueError, match="not a tfalign training run"):
        load_model_dir(str(tmp_path))
    with pytest.raises(ValueError, match="model dir not found"):
        load_model_dir(str(tmp_path / "missing"))


def test_an_existing_run_is_not_overwritten_and_resume_flags_must_match(run_dir, capsys):
    assert _main([*TINY, "--epochs", 3, "--out", run_dir]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert _main(["--out", run_dir, "--resume", "--epochs", 5]) == 2
    assert "--epochs 5 differs from the run being resumed (3" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- resuming

def test_resume_after_a_crash_continues_exactly(tmp_path, monkeypatch):
    from tfalign.training.loop import Trainer
    argv = [*TINY, "--epochs", 3, "--steps-per-epoch", 2, "--seed", 11]
    assert _main([*argv, "--out", tmp_path / "straight"]) == 0

    make = Trainer._make_train_step

    def crashing(self):
        step, calls = make(self), []

        def wrapped(iterator):
            calls.append(1)
            if len(calls) == 5:  # the first step of epoch 3
                raise KeyboardInterrupt("simulated crash")
            return step(iterator)
        return wrapped

    monkeypatch.setattr(Trainer, "_make_train_step", crashing)
    with pytest.raises(KeyboardInterrupt):
        _main([*argv, "--out", tmp_path / "crashed"])
    monkeypatch.setattr(Trainer, "_make_train_step", make)
    assert json.loads((tmp_path / "crashed/checkpoints/last.json").read_text())["epoch"] == 2
    assert _main(["--out", tmp_path / "crashed", "--resume", "--no-progress"]) == 0

    straight = json.loads((tmp_path / "straight/history.json").read_text())
    resumed = json.loads((tmp_path / "crashed/history.json").read_text())
    assert [s["start_epoch"] for s in resumed["sessions"]] == [1, 3]
    for a, b in zip(straight["epochs"], resumed["epochs"], strict=True):
        assert (a["epoch"], a["step"], a["seed"]) == (b["epoch"], b["step"], b["seed"])
        assert a["train"]["loss"] == pytest.approx(b["train"]["loss"], rel=1e-6)
        assert a["val_nme"] == pytest.approx(b["val_nme"], rel=1e-6)
    for a, b in zip(_last_weights(tmp_path / "straight"), _last_weights(tmp_path / "crashed")):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_kill_9_mid_epoch_then_resume_continues_from_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tfalign.train", *TINY, "--epochs", 3, "--steps-per-epoch", 30, "--seed", 2,
           "--out", out]
    proc = subprocess.Popen([str(c) for c in cmd], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    last = out / "checkpoints" / "last.json"
    try:
        deadline = time.monotonic() + 300  # bounds the test, not a timing assertion
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert last.exists(), f"no checkpoint appeared (exit {proc.poll()})"
        time.sleep(0.5)  # into the next epoch
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = json.loads(last.read_text())["epoch"]
    assert 1 <= done < 3, "the run finished before it could be killed"
    before = json.loads((out / "history.json").read_text())["epochs"][:done]

    assert _main(["--out", out, "--resume", "--no-progress"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    assert history["epochs"][:done] == before  # epochs up to the checkpoint are kept as they were
    assert history["sessions"][-1]["start_epoch"] == done + 1
    assert history["epochs"][-1]["step"] == 90  # 3 epochs × 30 steps: nothing lost, nothing done twice
    assert json.loads(last.read_text())["epoch"] == 3
    leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not leftovers


def test_a_nan_loss_stops_the_run_naming_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from tfalign.training.testing import TinyTest
    real = TinyTest.loss

    def poisoned(self, config, outputs, batch):
        total, parts = real(self, config, outputs, batch)
        return total * float("nan"), parts

    monkeypatch.setattr(TinyTest, "loss", poisoned)
    assert _main([*TINY, "--epochs", 2, "--steps-per-epoch", 2, "--out", tmp_path / "run"]) == 1
    err = capsys.readouterr().err
    assert "the loss became nan at epoch 1, step 1; last good checkpoint: none" in err


def test_tfalign_turns_on_onednn_so_grouped_convolutions_train_on_any_cpu(tmp_path):
    """TensorFlow's own CPU kernels have no grouped-conv gradient; it enables oneDNN's by default only on CPUs with
    AVX-512 VNNI/BF16 or AMX. Importing tfalign first must give a process where a grouped Conv2D trains."""
    code = ("import os\n"
            "from tfalign._keras import tf, keras\n"
            "assert os.environ['TF_ENABLE_ONEDNN_OPTS'] == '1'\n"
            "layer = keras.layers.Conv2D(4, 3, groups=2)\n"
            "x = tf.random.uniform((1, 6, 6, 4))\n"
            "with tf.GradientTape() as tape:\n"
            "    tape.watch(x)\n"
            "    y = tf.reduce_sum(layer(x))\n"
            "gx, gk = tape.gradient(y, [x, layer.kernel])\n"
            "print('grads', gx.shape, gk.shape)\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         cwd=pathlib.Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "grads (1, 6, 6, 4) (3, 3, 2, 4)" in out.stdout


def test_a_missing_grouped_conv_gradient_is_explained(tmp_path, monkeypatch, capsys):
    from tfalign._keras import tf
    from tfalign.training.loop import Trainer

    def no_kernel(self, *args, **kwargs):
        raise tf.errors.InvalidArgumentError(None, None, "Gradients for grouped convolutions are not supported on "
                                                         "CPU. Please file a feature request")

    monkeypatch.setattr(Trainer, "_train_epoch", no_kernel)
    assert _main([*TINY, "--epochs", 1, "--steps-per-epoch", 1, "--out", tmp_path / "run"]) == 1
    err = capsys.readouterr().err
    assert "grouped convolutions" in err and "TF_ENABLE_ONEDNN_OPTS=1" in err
    assert len(err.strip().splitlines()) == 1


def test_usage_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exc:
        _main(["--model", "tiny_test", "--strategy", "cluster", "--out", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice: 'cluster'" in err[0]


def test_skip_bad_goes_on_past_a_broken_file_and_lists_it(tmp_path, capsys):
    import cv2

    from tfalign.data.synthetic import make_records
    faces = tmp_path / "faces"
    faces.mkdir()
    for i, rec in enumerate(make_records(6, size=96)):
        cv2.imwrite(str(faces / f"f{i}.png"), cv2.cvtColor(rec.image, cv2.COLOR_RGB2BGR))
        pts = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in rec.points)
        (faces / f"f{i}.pts").write_text(f"version: 1\nn_points: 68\n{{\n{pts}\n}}\n")
    (faces / "broken.pts").write_text("version: 1\nn_points: 68\n{\n1 2\n")
    cv2.imwrite(str(faces / "broken.png"), np.zeros((8, 8, 3), np.uint8))
    argv = ["--model", "tiny_test", "--data", f"300w:{faces}", "--val", "synthetic:4:mtfl_5:1", "--epochs", 1,
            "--batch-size", 4, "--no-progress"]
    assert _main([*argv, "--out", tmp_path / "strict"]) == 2
    assert "broken.pts" in capsys.readouterr().err
    assert _main([*argv, "--skip-bad", "--out", tmp_path / "lenient"]) == 0
    run = json.loads((tmp_path / "lenient/config.json").read_text())
    assert run["skip_bad"] is True and run["train_faces"] == 6
    assert len(run["skipped_records"]) == 1 and "broken.pts" in run["skipped_records"][0]


def test_paired_views_give_the_loss_the_twin_outputs(tmp_path, monkeypatch):
    """InputSpec.pair: the pipeline adds image2/points2/affine and the loop runs the model on both views."""
    from tfalign.training.testing import TinyTest
    real, seen = TinyTest.loss, []

    def checking(self, config, outputs, batch):
        seen.append((tuple(outputs["twin"]["landmarks"].shape), "points2" in batch and "affine" in batch))
        return real(self, config, outputs, batch)

    monkeypatch.setattr(TinyTest, "loss", checking)
    assert _main([*TINY, "--set", "input.pair=true", "--epochs", 1, "--steps-per-epoch", 1,
                  "--out", tmp_path / "run"]) == 0
    assert seen and seen[0] == ((8, 5, 2), True)


# ---------------------------------------------------------------------------------------------- fine-tuning

def test_init_starts_from_a_runs_best_weights_and_is_recorded(run_dir, tmp_path):
    from tfalign.training import load_model_dir
    out = tmp_path / "ft"
    # One step at a learning rate of 1e-12: the weights after training are the starting ones (to 1e-9).
    assert _main([*TINY, "--epochs", 1, "--steps-per-epoch", 1, "--set", "train.learning_rate=1e-12",
                  "--init", run_dir, "--out", out]) == 0
    run = json.loads((out / "config.json").read_text())
    assert run["init"] == str(run_dir)
    start = load_model_dir(str(run_dir))[2].get_weights()
    tuned = _last_weights(out)
    assert len(start) == len(tuned) and all(np.allclose(a, b, rtol=0, atol=1e-9) for a, b in zip(start, tuned))
    # Without --init the same run starts elsewhere (so the check above can fail).
    fresh = tmp_path / "fresh"
    assert _main([*TINY, "--epochs", 1, "--steps-per-epoch", 1, "--set", "train.learning_rate=1e-12", "--seed", 9,
                  "--out", fresh]) == 0
    assert not all(np.allclose(a, b, rtol=0, atol=1e-3) for a, b in zip(start, _last_weights(fresh)))


def test_init_from_a_weights_folder_with_other_shapes_names_the_weight(run_dir, tmp_path, capsys):
    from tfalign.models.base import save_weights_folder
    from tfalign.training import load_model_dir
    _, config, model = load_model_dir(str(run_dir))
    folder = save_weights_folder(model, config, str(tmp_path / "weights"), dtype="float32")
    out = tmp_path / "ok"
    assert _main([*TINY, "--epochs", 1, "--steps-per-epoch", 1, "--set", "train.learning_rate=1e-12",
                  "--init", folder, "--out", out]) == 0
    assert all(np.allclose(a, b, rtol=0, atol=1e-9) for a, b in zip(model.get_weights(), _last_weights(out)))
    # A wider model cannot start from these weights: the error names the file and a weight, before any step.
    with pytest.raises(ValueError, match=r"weights\.npz: weight .* has shape"):
        from tfalign.training import init_weights
        from tfalign.training.runconfig import resolve_model
        arch, cfg = resolve_model("tiny_test", {"filters": 16})
        init_weights(arch.build(cfg), folder, "tiny_test")
