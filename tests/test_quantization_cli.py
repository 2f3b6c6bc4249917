"""python -m quantization.prune / quantization.qat on the tiny test model: folders tfalign.export accepts, errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from quantization import prune

DATA = ["--data", "synthetic:12:mtfl_5", "--val", "synthetic:4:mtfl_5:1"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("argv,match", [
    (["--method", "magnitude", "--target", "0.5", "--out", "x"], "give --model NAME or --model-dir RUN"),
    (["--model", "tiny_test", "--method", "magnitude", "--target", "1.5", "--epochs", "0", "--out", "x"], "--target: must be in"),
    (["--model", "tiny_test", "--method", "channel", "--target", "0.5", "--epochs", "2", "--out", "x"],
     "--data and --val are needed"),
    (["--model", "tiny_test", "--method", "magnitude", "--target", "0.5", "--criterion", "bn", "--epochs", "0",
      "--out", "x"],
     "apply to --method channel only"),
    (["--model", "tiny_test", "--method", "channel", "--target", "0.5", "--epochs", "-1", "--out", "x"],
     "--epochs: must be >= 0"),
    (["--model", "tiny_test", "--method", "magnitude", "--target", "0.5", "--distill", "3", "--epochs", "0",
      "--out", "x"], "--distill: needs --epochs > 0"),
    (["--model", "tiny_test", "--method", "channel", "--target", "0.5", "--distill-outputs", "heatmaps",
      "--epochs", "0", "--out", "x"], "--distill-outputs: needs --distill W > 0"),
    (["--model", "tiny_test", "--method", "channel", "--target", "0.5", "--ratio", "conv1", "--epochs", "0",
      "--out", "x"], "--ratio 'conv1': expected LAYER=R"),
    (["--model", "tiny_test", "--method", "channel", "--target", "0.5", "--ratio", "conv1=1.2", "--epochs", "0",
      "--out", "x"], "with R in [0, 1)"),
    (["--model", "tiny_test", "--method", "magnitude", "--target", "0.5", "--gradual", "2", "--epochs", "0",
      "--out", "x"], "apply to --method channel only"),
    (["--model", "tiny_test", "--method", "channel", "--target", "0.5", "--gradual", "2", "--epochs", "0",
      "--out", "x"], "--gradual: needs --data and --val"),
    (["--model", "tiny_test", "--method", "channel", "--target", "0.5", "--gradual", "-1", "--epochs", "0",
      "--out", "x"], "--gradual: must be >= 0"),
])
def test_prune_usage_errors_are_one_line_exit_2(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        prune.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and err.startswith("quantization.prune: error:")


def test_unknown_model_is_one_line_exit_2(tmp_path, capsys):
    code = prune.main(["--model", "no_such_model", "--method", "channel", "--target", "0.5", "--epochs", "0",
                       "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("quantization.prune: error: --model:") and "no_such_model" in err


def test_help_explains_every_flag():
    out = _cli("quantization.prune", "--help")
    assert out.returncode == 0
    for flag in ("--model", "--model-dir", "--method", "--target", "--data", "--val", "--epochs", "--steps",
                 "--lr", "--criterion", "--divisor", "--min-channels", "--ratio", "--distill", "--skip", "--out"):
        assert flag in out.stdout


def test_magnitude_writes_a_run_folder_the_exporter_loads(tmp_path):
    from mobile_export.export import load_model
    from quantization import pruning
    out = tmp_path / "sparse"
    code = prune.main(["--model", "tiny_test", "--method", "magnitude", "--target", "0.5", *DATA, "--epochs", "1",
                       "--steps", "3", "--batch-size", "4", "--lr", "1e-3", "--out", str(out)])
    assert code == 0
    run = json.loads((out / "config.json").read_text())
    assert run["compression"]["method"] == "magnitude" and run["config"]["train"]["schedule"] == "cosine"
    loaded = load_model(None, str(out))  # what python -m tfalign.export --model-dir does
    from tfalign.training import load_model_dir
    _, _, model = load_model_dir(str(out))
    assert pruning.sparsity_report(model)["total"]["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert loaded.inference.outputs[0].shape[1:] == (5, 2)


def test_magnitude_with_a_teacher_still_reaches_the_sparsity(tmp_path):
    # The sparse model is nested inside the distillation wrapper: tfmot's step callback must still find its
    # wrappers (else the mask never updates and sparsity stays 0) and the saved model is the stripped student.
    from quantization import pruning
    from tfalign.training import load_model_dir
    out = tmp_path / "sparse"
    code = prune.main(["--model", "tiny_test", "--method", "magnitude", "--target", "0.5", "--distill", "10", *DATA,
                       "--epochs", "1", "--steps", "3", "--batch-size", "4", "--lr", "1e-3", "--out", str(out)])
    assert code == 0
    run = json.loads((out / "config.json").read_text())
    assert run["compression"]["distill"] == {"landmarks": 10.0}
    _, _, model = load_model_dir(str(out))
    names = [layer.name for layer in model.layers]
    assert "teacher" not in names and not any(type(l).__name__ == "PruneLowMagnitude" for l in model.layers)
    assert pruning.sparsity_report(model)["total"]["sparsity"] == pytest.approx(0.5, abs=0.02)


def test_channel_one_shot_writes_tflite_and_slim_model(tmp_path):
    from quantization import channel_pruning
    from tfalign._keras import keras
    out = tmp_path / "slim"
    code = prune.main(["--model", "tiny_test", "--method", "channel", "--target", "0.5", "--epochs", "0",
                       "--divisor", "1", "--min-channels", "1", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "compression.json").read_text())
    assert summary["params"] < summary["params_before"] and summary["channels_removed"] > 0.3
    slim = keras.models.load_model(str(out / "slim.keras"), compile=False)
    assert channel_pruning.count_params(slim) == summary["params"]
    assert (out / "tiny_test_channel_float32.tflite").stat().st_size > 0
    # The folder is a run the exporter loads (the slim widths come from slim.keras, not the config).
    from mobile_export.export import load_model
    loaded = load_model(None, str(out))
    assert channel_pruning.count_params(loaded.inference) <= summary["params"]
    export = _cli("tfalign.export", "--model-dir", str(out), "--quantize", "int8", "--calibration",
                  "synthetic:8:mtfl_5", "--check", "synthetic:4:mtfl_5:1", "--no-check", "--out", str(tmp_path / "exp"),
                  "--name", "slim_int8")
    assert export.returncode == 0, export.stderr[-2000:]
    assert (tmp_path / "exp" / "slim_int8.tflite").stat().st_size > 0


def test_channel_with_a_teacher_and_per_layer_ratios(tmp_path):
    from tfalign._keras import keras
    out = tmp_path / "taught"
    code = prune.main(["--model", "tiny_test", "--method", "channel", "--target", "0.25", "--ratio", "conv1=0.5",
                       "--divisor", "1", "--min-channels", "1", "--distill", "10", *DATA, "--epochs", "1",
                       "--steps", "2", "--batch-size", "4", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "compression.json").read_text())
    assert summary["distill"] == {"landmarks": 10.0} and summary["ratios"] == {"conv1": 0.5}
    slim = keras.models.load_model(str(out / "slim.keras"), compile=False)
    # The student came back out of the teacher wrapper, under its own layer names and the per-layer widths.
    assert slim.get_layer("conv1").filters == 4 and slim.get_layer("conv2").filters == 6
    assert "teacher" not in [layer.name for layer in slim.layers]


def test_channel_gradual_fades_then_cuts(tmp_path):
    from tfalign._keras import keras
    out = tmp_path / "gradual"
    code = prune.main(["--model", "tiny_test", "--method", "channel", "--target", "0.5", "--divisor", "1",
                       "--min-channels", "1", "--criterion", "bn", "--gradual", "2", "--distill", "10", *DATA,
                       "--epochs", "1",
                       "--steps", "2", "--batch-size", "4", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "compression.json").read_text())
    # 2 epochs x 2 steps of fading (the student inside the teacher wrapper), then the cut: the function survives it.
    assert summary["gradual"]["epochs"] == 2 and summary["gradual"]["steps_per_epoch"] == 2
    assert summary["gradual"]["cut_gap"] < 1e-4
    assert (out / "gradual" / "history.json").is_file() and (out / "finetune" / "history.json").is_file()
    slim = keras.models.load_model(str(out / "slim.keras"), compile=False)
    assert summary["params"] < summary["params_before"]
    assert "teacher" not in [layer.name for layer in slim.layers]


def test_qat_cli_writes_int8_tflite_and_float_run(tmp_path):
    from mobile_export import tflite
    from mobile_export.export import load_model
    from quantization import qat
    out = tmp_path / "qat"
    code = qat.main(["--model", "tiny_test", *DATA, "--epochs", "1", "--steps", "2", "--batch-size", "4",
                     "--out", str(out)])
    assert code == 0
    data = (out / "tiny_test_qat_int8.tflite").read_bytes()
    assert tflite.inspect(data)["int8_coverage"] > 0.5
    loaded = load_model(None, str(out))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    keras_out = loaded.inference(x).numpy()
    # The run folder's float weights (fake-quant removed) and the int8 model compute the same landmarks.
    np.testing.assert_allclose(tflite.Runner(data)(x), keras_out, atol=0.05)


def test_qat_with_a_teacher_and_frozen_batch_norms(tmp_path):
    from quantization import qat
    out = tmp_path / "qat"
    code = qat.main(["--model", "tiny_test", *DATA, "--epochs", "1", "--steps", "2", "--batch-size", "4",
                     "--distill", "10", "--freeze-bn", "--out", str(out)])
    assert code == 0 and (out / "tiny_test_qat_int8.tflite").is_file()
    summary = json.loads((out / "config.json").read_text())["compression"]
    assert summary["distill"] == {"landmarks": 10.0} and summary["freeze_bn"] is True


@pytest.mark.parametrize("argv,match", [
    (["--epochs", "1"], "--data and --val are needed"),
    ([*DATA, "--epochs", "1", "--calibration-size", "0"], "--uncovered calibrate needs calibration faces"),
    (["--epochs", "0", "--distill", "1"], "--distill: needs --epochs > 0"),
    (["--epochs", "0", "--freeze-bn"], "--freeze-bn: needs --epochs > 0"),
    ([*DATA, "--epochs", "1", "--distill-outputs", "heatmaps"], "--distill-outputs: needs --distill W > 0"),
    ([*DATA, "--epochs", "1", "--distill", "-2"], "--distill: must be >= 0"),
])
def test_qat_usage_error(argv, match, capsys):
    from quantization import qat
    with pytest.raises(SystemExit) as exc:
        qat.main(["--model", "tiny_test", *argv, "--out", "x"])
    assert exc.value.code == 2 and match in capsys.readouterr().err
