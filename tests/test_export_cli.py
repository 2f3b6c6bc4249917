"""python -m tfalign.export: files, summary, --force, atomicity, errors (one line on stderr, exit code 2)."""
import json
import os
import subprocess
import sys

import pytest

from tests import export_helpers as H

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--model", H.NAME, "--check-size", "3", "--calibration-size", "4"]


def _main(argv, capsys):
    from mobile_export.cli import main
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, H.filter_noise(err)


def test_help_explains_every_flag_without_importing_tensorflow():
    res = subprocess.run([sys.executable, "-m", "tfalign.export", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert res.returncode == 0
    for flag in ("--target", "--model", "--model-dir", "--quantize", "--prune", "--out", "--force",
                 "--calibration", "--io-dtype", "--palettize", "--check", "--no-check", "--name", "--license"):
        assert flag in res.stdout
    code = "import sys, tfalign.export; sys.exit('tensorflow' in sys.modules or 'mobile_export' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_tflite_export_writes_model_contract_and_summary(tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = _main(FAST + ["--quantize", "int8", "--io-dtype", "uint8", "--out", str(out)], capsys)
    assert code == 0, err
    stem = out / f"{H.NAME}_int8"
    assert sorted(os.listdir(out)) == sorted(f"{H.NAME}_int8{s}" for s in (".tflite", ".contract.json",
                                                                           ".summary.json"))
    contract = json.loads(stem.with_suffix(".contract.json").read_text())
    summary = json.loads(stem.with_suffix(".summary.json").read_text())
    assert contract["input"]["dtype"] == "uint8" and contract["model"]["file"] == f"{H.NAME}_int8.tflite"
    assert summary["size_bytes"] == os.path.getsize(stem.with_suffix(".tflite"))
    assert summary["ops"]["CONV_2D"] == 2 and 0 < summary["int8_coverage"] < 1
    assert summary["parity"]["passed"] and summary["parity"]["faces"] == 3
    assert summary["host_latency"]["median_ms"] > 0
    assert summary["host_latency"]["x86_amx"] in ("available", "absent")
    assert summary["calibration"].startswith("synthetic:4")
    # the contract is embedded in the model too
    from tfalign.runtime import read_tflite_metadata
    assert json.loads(read_tflite_metadata(stem.with_suffix(".tflite").read_bytes())) == contract
    for word in ("size", "ops", "int8 coverage", "parity", "host latency"):
        assert word in stdout


def test_existing_files_are_replaced_only_with_force(tmp_path, capsys):
    out = str(tmp_path)
    assert _main(FAST + ["--out", out], capsys)[0] == 0
    model = tmp_path / f"{H.NAME}_float32.tflite"
    before = model.stat().st_mtime_ns
    code, _, err = _main(FAST + ["--out", out], capsys)
    assert code == 2 and "exists; pass --force" in err and len(err.strip().splitlines()) == 1
    assert model.stat().st_mtime_ns == before
    assert _main(FAST + ["--out", out, "--force"], capsys)[0] == 0
    assert model.stat().st_mtime_ns != before


def test_a_failing_target_leaves_nothing_written(tmp_path, capsys, monkeypatch):
    from mobile_export import coreml

    def broken(*a, **k):
        raise ValueError("CoreML conversion failed: simulated")

    monkeypatch.setattr(coreml, "convert", broken)
    out = tmp_path / "out"
    code, _, err = _main(FAST + ["--target", "all", "--out", str(out)], capsys)
    assert code == 2 and "simulated" in err
    assert not out.exists() or os.listdir(out) == []


def test_a_failing_write_keeps_the_old_files(tmp_path, capsys, monkeypatch):
    out = str(tmp_path)
    assert _main(FAST + ["--out", out], capsys)[0] == 0
    old = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)}
    real_fsync = os.fsync

    def failing_fsync(fd):  # the model is the last file staged: fail while writing it
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="simulated"):
        _main(FAST + ["--out", out, "--force", "--license", "other"], capsys)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)} == old


@pytest.mark.parametrize("argv, message", [
    (["--prune", "50%"], "--prune: expected magnitude:S or channels:R"),
    (["--prune", "magnitude:1.5"], "--prune: expected"),
    (["--model", "no_such_model"], "--model: unknown model 'no_such_model'"),
    (["--model-dir", "/no/such/run"], "/no/such/run: model dir not found"),
    (["--calibration-size", "0"], "--calibration-size: must be > 0"),
    (["--palettize", "4"], "--palettize: applies to CoreML only"),
    (["--name", "a/b"], "--name: a file stem"),
    (["--quantize", "int8", "--calibration", "300w:/no/such/dir"], "--calibration: calibration data 300w:/no/such"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, argv, message):
    args = (["--model", H.NAME] if "--model" not in argv and "--model-dir" not in argv else []) + argv
    code, _, err = _main(args + ["--out", str(tmp_path)], capsys)
    assert code == 2
    assert err.strip().startswith("tfalign.export: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_int8_calibration_from_a_dataset_spec(tmp_path, capsys, shared_data):
    spec = f"300w:{shared_data / 'lfpw' / 'trainset'}"
    code, _, err = _main(FAST + ["--quantize", "int8", "--calibration", spec, "--check", spec,
                                 "--out", str(tmp_path)], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / f"{H.NAME}_int8.summary.json").read_text())
    assert summary["calibration"] == spec and summary["parity"]["faces_source"] == spec


def test_default_model_exports_on_a_machine_without_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TFALIGN_DATA", str(tmp_path / "nothing_here"))
    code, stdout, err = _main(["--out", str(tmp_path), "--check-size", "2", "--target", "all"], capsys)
    assert code == 0, err
    names = os.listdir(tmp_path)
    assert "mobile_two_stage_float32.tflite" in names and "mobile_two_stage_coreml_fp16.mlpackage" in names
    contract = json.loads((tmp_path / "mobile_two_stage_float32.contract.json").read_text())
    assert contract["scheme"]["name"] == "300w_68"


def test_model_dir_exports_the_runs_weights(tmp_path, capsys):
    from tfalign.config import to_dict
    run = tmp_path / "runs" / "tiny_run"
    run.mkdir(parents=True)
    arch, config, _ = H.tiny()
    trained = arch.build(config)
    trained.set_weights([w * 1.5 + 0.01 for w in trained.get_weights()])  # not what a fresh build gives
    trained.save_weights(str(run / "best.weights.h5"))
    (run / "config.json").write_text(json.dumps({"model": H.NAME, "config": to_dict(config),
                                                 "data": ["synthetic:10"]}))
    code, _, err = _main(["--model-dir", str(run), "--check-size", "3", "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    contract = json.loads((tmp_path / "out" / "tiny_run_float32.contract.json").read_text())
    assert contract["model"]["weights"] == f"run:{run}" and contract["model"]["training_data"] == "synthetic:10"
    from mobile_export.export import load_model, weights_fingerprint
    assert weights_fingerprint(load_model(None, str(run)).inference) == weights_fingerprint(trained)


@pytest.mark.parametrize("spec", ["magnitude:0.5", "channels:0.5"])
def test_prune_before_export(tmp_path, capsys, spec):
    code, _, err = _main(["--model", H.WIDE, "--check-size", "3", "--prune", spec, "--out", str(tmp_path)], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / f"{H.WIDE}_float32.summary.json").read_text())
    assert summary["prune"]["spec"] == spec and summary["parity"]["passed"]
    assert "pruned " + spec in summary["weights"]
    if spec.startswith("channels"):
        assert summary["prune"]["params_after"] < summary["prune"]["params_before"]
    else:
        assert "sparsity" in summary["prune"]


def test_set_overrides_keep_weights_and_refuse_weight_changes():
    """--set exit_stage=1 exports DeCaFA's first stage with the same weights; a width change is refused."""
    import numpy as np

    from tfalign import config as cfg_lib
    from tfalign.models.base import resolve
    from mobile_export.export import with_overrides

    arch, cfg = resolve("decafa")
    cfg = cfg_lib.replace(cfg, channels=(4, 8, 8), num_stages=2, input=cfg_lib.replace(cfg.input, height=32, width=32))
    model = arch.build(cfg)
    early_cfg, early = with_overrides(arch, cfg, model, ["exit_stage=1"])
    assert early_cfg.exit_stage == 1
    x = np.random.RandomState(0).rand(1, 32, 32, 1).astype(np.float32)
    np.testing.assert_allclose(arch.inference_model(early_cfg, early)(x), model(x)["landmarks_stage1"][:, :68],
                               atol=1e-6)
    with pytest.raises(ValueError, match="changes the model's weights"):
        with_overrides(arch, cfg, model, ["channels=[8,8,8]"])
    with pytest.raises(ValueError, match="unknown config field 'no_such'"):
        with_overrides(arch, cfg, model, ["no_such=1"])


def test_without_check_the_parity_faces_come_from_the_calibration_dataset(shared_data):
    """A model trained on real faces drifts apart from its int8 copy on procedural faces: real calibration faces
    make the parity check use that dataset too (another sample), unless --check says otherwise."""
    from mobile_export import export
    from tfalign.models.base import resolve

    spec = f"300w:{shared_data / 'lfpw' / 'trainset'}"
    input_spec = resolve("mobile_two_stage")[1].input
    faces = export.Faces(input_spec, calibration=spec, calibration_size=4, check_size=3)
    assert faces.check_source.startswith(spec) and "no --check given" in faces.check_source
    records = faces.check_records()
    assert len(records) == 3 and all(os.path.isfile(r.image_path) for r in records)
    synthetic = export.Faces(input_spec, check_size=3)
    assert synthetic.check_source.startswith("synthetic:3")
    explicit = export.Faces(input_spec, calibration=spec, check="synthetic:3", check_size=3)
    assert explicit.check_source == "synthetic:3"


def test_summary_says_when_int8_timing_used_amx():
    from mobile_export.export import format_summary
    base = {"target": "tflite", "files": {"model": "m.tflite"}, "size_bytes": 1024, "weights": "random",
            "params": 10, "quantize": "int8",
            "host_latency": {"median_ms": 1.0, "p90_ms": 1.2, "threads": 1, "x86_amx": "available"}}
    assert "--no-amx" in format_summary(base)
    for change in ({"quantize": "none"}, {"host_latency": {**base["host_latency"], "x86_amx": "absent"}}):
        assert "--no-amx" not in format_summary({**base, **change})


def test_summary_says_when_int8_timing_ran_without_an_8_bit_dot_product():
    from mobile_export.export import format_summary
    lat = {"median_ms": 2.4, "p90_ms": 2.5, "threads": 1, "x86_amx": "absent", "cpu_features": ["avx2", "fma"]}
    base = {"target": "tflite", "files": {"model": "m.tflite"}, "size_bytes": 1024, "weights": "random",
            "params": 10, "quantize": "int8", "host_latency": lat}
    assert "8-bit dot-product" in format_summary(base)
    for change in ({"quantize": "none"}, {"host_latency": {**lat, "cpu_features": ["avx2", "avx512_vnni"]}}):
        assert "8-bit dot-product" not in format_summary({**base, **change})
