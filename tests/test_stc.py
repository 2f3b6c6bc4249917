"""Self-training with curriculum (tfalign.stc): the CLI end to end on tiny synthetic data, errors, pseudo-labels."""
import json
import os

import numpy as np
import pytest

from tfalign import stc
from tfalign.data.spec import load_records

TINY = ["--set", "input.height=128", "--set", "input.width=128", "--set", 'backbone="mobilenet_v3_small"',
        "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2", "--no-progress"]


def _args(out, *extra):
    return ["--labelled", "synthetic:6", "--unlabelled", "synthetic:4:mtfl_5", "--val", "synthetic:4",
            "--out", str(out), *TINY, *extra]


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        stc.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--labelled", "--unlabelled", "--val", "--out", "--model", "--set", "--curriculum", "--epochs",
                 "--steps-per-epoch", "--batch-size", "--seed", "--force", "--no-progress", "--init"):
        assert flag in text


def test_curriculum_runs_end_to_end(tmp_path):
    out = tmp_path / "stc"
    assert stc.main(_args(out, "--curriculum", "1,3")) == 0
    history = json.loads((out / "history.json").read_text())
    rounds = history["rounds"]
    assert [r["task"] for r in rounds] == [None, 1, 3]
    assert [r["pseudo_labelled"] for r in rounds] == [0, 4, 4]
    assert all(np.isfinite(r["best_val_nme"]) for r in rounds)
    for k in range(3):
        assert (out / f"round_{k}" / "best.weights.h5").is_file()
    # The output folder is a model dir like the trainer's: it loads without data, STC heads and neighbours included.
    from tfalign.training import load_model_dir
    _, config, model = load_model_dir(str(out))
    assert config.stc and len(config.neighbors) == 68
    assert model(np.zeros((1, 128, 128, 3), np.float32))["landmarks"].shape == (1, 68, 2)


@pytest.mark.parametrize("extra,message", [
    (["--curriculum", "1,4"], "--curriculum '1,4': tasks must be 1, 2 or 3"),
    (["--curriculum", "one"], "expected comma-separated task numbers"),
    (["--model", "mobile_two_stage"], "STC needs a PIPNet model"),
    (["--epochs", "0"], "--epochs: must be > 0"),
    (["--set", "stride=7"], "stride must be one of"),
    (["--init", "/nonexistent/w.h5"], "--init /nonexistent/w.h5: not found"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, extra, message):
    assert stc.main(_args(tmp_path / "x", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfalign.stc: error:") and message in err and "\n" not in err
    assert not (tmp_path / "x" / "config.json").exists()


def test_bad_data_spec_names_the_flag(tmp_path, capsys):
    args = _args(tmp_path / "x")
    args[args.index("--unlabelled") + 1] = f"mtfl:{tmp_path}/missing.txt"
    assert stc.main(args) == 2
    err = capsys.readouterr().err
    assert "--unlabelled" in err and "missing.txt" in err


def test_an_existing_run_is_not_overwritten_without_force(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert stc.main(_args(out)) == 2
    assert "pass --force" in capsys.readouterr().err


def test_unlabelled_faces_keep_their_crop_but_lose_their_labels():
    from tfalign.data import geometry
    rec = load_records("synthetic:1:mtfl_5")[0]
    stand_in = stc.crop_record(rec, "300w_68")
    assert stand_in.scheme == "300w_68" and stand_in.num_points == 68
    np.testing.assert_allclose(geometry.points_box(stand_in.points),
                               geometry.face_box(rec.points, rec.scheme, "300w_68"), atol=1e-4)


def test_pseudo_labels_are_the_predictions_in_image_pixels():
    from tfalign.data import geometry
    from tfalign.models.base import InputSpec
    spec = InputSpec(height=64, width=64)
    records = load_records("synthetic:3")
    fixed = np.random.default_rng(0).uniform(0.2, 0.8, (68, 2)).astype(np.float32)

    def predict(images):  # a "model" that always answers the same normalised face
        return np.repeat(fixed[None], images.shape[0], axis=0)

    pseudo = stc.pseudo_label(predict, records, spec, 2, task=2)
    assert [p.attributes["stc_task"] for p in pseudo] == [2, 2, 2]
    for rec, p in zip(records, pseudo):
        affine = geometry.box_affine(geometry.face_box(rec.points, rec.scheme, "300w_68"), spec)
        np.testing.assert_allclose(p.points, geometry.points_to_image(fixed, affine, spec), atol=1e-3)
        assert p.image_path == rec.image_path and (p.image is rec.image)


def test_every_round_starts_from_init_weights(tmp_path, monkeypatch):
    import tfalign.training as training
    from tfalign.models.pipnet import PIPNet
    from tfalign.config import replace
    from tfalign.models.base import resolve
    # Weights of the plain (non-STC) model fit the STC model: its extra heads have no parameters.
    _, cfg = resolve("pipnet_mbv3")
    cfg = replace(cfg, **{"input.height": 128, "input.width": 128, "backbone": "mobilenet_v3_small"})
    start = PIPNet().build(cfg)
    path = str(tmp_path / "start.weights.h5")
    start.save_weights(path)
    seen = []
    real = training.init_weights

    def spy(model, init, name):
        out = real(model, init, name)
        seen.append([w.copy() for w in model.get_weights()])
        return out

    monkeypatch.setattr(training, "init_weights", spy)
    out = tmp_path / "stc"
    assert stc.main(_args(out, "--curriculum", "3", "--init", path)) == 0
    assert len(seen) == 2  # round 0 and round 1 both start from the file, not from a random init
    for weights in seen:
        for a, b in zip(weights, start.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert json.loads((out / "config.json").read_text())["init"] == path
