"""python -m tfalign.evaluate and the scoring it shares with the trainer's validation."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SUBSET_A, SUBSET_B = "synthetic:12:mtfl_5:7", "synthetic:6:300w_68:9"


def _evaluate(argv):
    from tfalign.evaluate import main
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tfalign.train import main
    out = tmp_path_factory.mktemp("eval") / "run"
    assert main(["--model", "tiny_test", "--data", "synthetic:16:mtfl_5", "--val", "synthetic:8:mtfl_5:3",
                 "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--no-progress",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def report(model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    # A threshold inside the error range of this barely trained model, so both failures and successes exist.
    assert _evaluate(["--model-dir", model_dir, "--data", SUBSET_A, "--data", SUBSET_B, "--threshold", 0.6,
                      "--out", folder / "report.json", "--plot", folder / "ced.png"]) == 0
    return json.loads((folder / "report.json").read_text()), folder


# ---------------------------------------------------------------------------------------------- scoring

def test_score_matches_a_hand_computed_case():
    from tfalign.training.evaluation import score
    from tfalign.schemes import get_scheme
    true = np.zeros((2, 5, 2))
    true[:, :, 0] = [[10, 30, 20, 12, 28]] * 2  # eyes 20 px apart
    true[:, :, 1] = [[10, 10, 20, 30, 30]] * 2
    pred = true.copy()
    pred[0, :, 0] += 2.0  # face 0: every point 2 px off → NME 0.1 (inter-ocular)
    pred[1, 0] += [6.0, 8.0]  # face 1: one point 10 px off → mean 2 px → 0.1
    mask = np.ones((2, 5))
    result = score(pred, true, mask, ("mtfl_5",), threshold=0.15)
    io = result["summary"]["mtfl_5"]["inter_ocular"]
    assert io["nme"] == pytest.approx(0.1) and io["faces"] == 2 and io["fr@0.15"] == 0.0
    assert io["auc@0.15"] == pytest.approx(1 - 0.1 / 0.15, abs=1e-3)
    np.testing.assert_allclose(result["per_sample"]["mtfl_5"]["inter_ocular"], [0.1, 0.1])
    assert result["primary"] == pytest.approx(0.1)
    assert get_scheme("mtfl_5").norm_pairs["inter_ocular"] == ((0,), (1,))


def test_score_skips_faces_without_points_of_a_scheme():
    from tfalign.training.evaluation import score
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 100, (3, 73, 2))
    pred = true + 1.0
    mask = np.ones((3, 73))
    mask[2, :68] = 0  # face 2 is a 5-point face: no 68-point error for it
    result = score(pred, true, mask, ("300w_68", "mtfl_5"))
    assert result["summary"]["300w_68"]["inter_ocular"]["faces"] == 2
    assert result["summary"]["mtfl_5"]["inter_ocular"]["faces"] == 3
    assert np.isnan(result["per_sample"]["300w_68"]["bbox"][2])
    with pytest.raises(ValueError, match="no face has points"):
        score(pred, true, np.zeros((3, 73)), ("300w_68", "mtfl_5"))


def test_predictions_map_back_to_image_pixels():
    """The Keras path crops with the pipeline and maps outputs back to the image: feeding the crop-normalised
    ground truth through it must give the records' own points."""
    from tfalign.data.spec import load_records
    from tfalign.models.base import InputSpec
    from tfalign.training.evaluation import predict_keras, targets
    spec = InputSpec(height=40, width=40, schemes=("mtfl_5",))
    records = load_records("synthetic:5:300w_68:4")
    pred = predict_keras(lambda x: x, records, spec, batch_size=2, inputs=lambda b: b["points"])
    true, mask = targets(records, spec.schemes)
    assert mask.all()
    np.testing.assert_allclose(pred, true, atol=1e-3)


def test_data_of_a_scheme_the_model_cannot_predict_is_refused():
    import types

    from tfalign.data.records import FaceRecord
    from tfalign.training.data import check_schemes
    records = [FaceRecord("", np.random.default_rng(0).uniform(0, 50, (39, 2)), "menpo_39", source="x.pts")]
    with pytest.raises(ValueError, match=r"--data menpo:X: .*menpo_39.*predicts mtfl_5"):
        check_schemes([("menpo:X", records)], types.SimpleNamespace(schemes=("mtfl_5",)), "--data")


# ---------------------------------------------------------------------------------------------- the CLI

def test_help_explains_every_flag():
    out = subprocess.run([sys.executable, "-m", "tfalign.evaluate", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0
    for flag in ("--model-dir", "--tflite", "--coreml", "--data", "--out", "--plot", "--threshold", "--which",
                 "--batch-size", "--skip-bad"):
        assert flag in out.stdout


def test_report_per_subset_attribute_and_normalisation(report):
    rep, folder = report
    assert rep["model"]["kind"] == "model_dir" and rep["schemes"] == ["mtfl_5"]
    assert list(rep["subsets"]) == [SUBSET_A, SUBSET_B]
    a, b = rep["subsets"][SUBSET_A], rep["subsets"][SUBSET_B]
    assert a["faces"] == 12 and b["faces"] == 6
    for sub in (a, b):
        assert set(sub["metrics"]["mtfl_5"]) == {"inter_ocular", "inter_pupil", "bbox", "diagonal"}
    # "all" pools the faces of both subsets.
    io = lambda m: m["mtfl_5"]["inter_ocular"]  # noqa: E731
    assert io(rep["all"]["metrics"])["faces"] == 18
    assert io(rep["all"]["metrics"])["nme"] == pytest.approx(
        (12 * io(a["metrics"])["nme"] + 6 * io(b["metrics"])["nme"]) / 18)
    # Synthetic faces carry an "occluded" flag: its groups partition the subset.
    groups = a["attributes"]["occluded"]
    assert sum(io(g)["faces"] for g in groups.values()) == 12
    assert sum(io(g)["faces"] * io(g)["nme"] for g in groups.values()) / 12 == pytest.approx(io(a["metrics"])["nme"])
    assert (folder / "ced.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attribute_groups_bin_head_yaw():
    import math

    from tfalign.data.records import FaceRecord
    from tfalign.evaluate import attribute_groups
    yaws = [0, -29, 31, 59, -75, 90]
    recs = [FaceRecord("", np.zeros((5, 2)), "mtfl_5", attributes={"pose_pyr": (0.1, math.radians(y), 0.0),
                                                                     "glasses": i % 2, "expression": {"a": 1}})
            for i, y in enumerate(yaws)]
    groups = attribute_groups(recs)
    assert groups["yaw"] == {"0-30": [0, 1], "30-60": [2, 3], "60-90": [4, 5]}
    assert groups["glasses"] == {"0": [0, 2, 4], "1": [1, 3, 5]}
    assert "expression" not in groups and "pose_pyr" not in groups
    ids = [FaceRecord("", np.zeros((5, 2)), "mtfl_5", attributes={"annotation_id": i}) for i in range(4)]
    assert attribute_groups(ids) == {}  # an identifier is not a subset


def test_failures_are_the_faces_above_the_threshold(report):
    rep, _ = report
    fails = rep["failures"]
    for name, sub in rep["subsets"].items():
        io = sub["metrics"]["mtfl_5"]["inter_ocular"]
        mine = [f for f in fails if f["subset"] == name]
        assert len(mine) == round(io["fr@0.6"] * io["faces"])
        assert all(f["nme"] > 0.6 and f["norm"] == "inter_ocular" and f["source"] for f in mine)
    assert 0 < len(fails) < 18, "pick a threshold that splits the faces"
    assert [f["nme"] for f in fails] == sorted((f["nme"] for f in fails), reverse=True)


def test_tflite_export_scores_like_keras(model_dir, tmp_path):
    """--tflite goes through the exported model's contract only (tfalign.runtime) and agrees with Keras."""
    from tfalign.export import main as export
    assert export(["--model-dir", str(model_dir), "--target", "tflite", "--out", str(tmp_path / "exp")]) == 0
    tflite = next((tmp_path / "exp").glob("*.tflite"))
    for flag, src, out in (("--tflite", tflite, "t.json"), ("--model-dir", model_dir, "k.json")):
        assert _evaluate([flag, src, "--data", SUBSET_A, "--out", tmp_path / out]) == 0
    t = json.loads((tmp_path / "t.json").read_text())
    k = json.loads((tmp_path / "k.json").read_text())
    assert t["model"]["kind"] == "tflite" and t["model"]["contract"].endswith(".contract.json")
    for norm, m in k["subsets"][SUBSET_A]["metrics"]["mtfl_5"].items():
        assert t["subsets"][SUBSET_A]["metrics"]["mtfl_5"][norm]["nme"] == pytest.approx(m["nme"], rel=1e-4)


@pytest.mark.parametrize("argv,needle", [
    (["--model-dir", "/nonexistent/run", "--data", "synthetic:2"], "/nonexistent/run: model dir not found"),
    (["--tflite", "/nonexistent/m.tflite", "--data", "synthetic:2"], "model file not found"),
    (["--model-dir", "MODEL", "--data", "bogus:1"], "--data bogus:1"),
    (["--model-dir", "MODEL", "--data", "synthetic:0"], "--data synthetic:0: no faces"),
    (["--model-dir", "MODEL", "--data", "synthetic:2", "--threshold", "0"], "--threshold"),
    (["--model-dir", "MODEL", "--data", "synthetic:2", "--data", "synthetic:2"], "given more than once"),
])
def test_bad_input_is_one_line_and_exit_2(model_dir, tmp_path, capsys, argv, needle):
    argv = [str(model_dir) if a == "MODEL" else a for a in argv]
    assert _evaluate([*argv, "--out", tmp_path / "r.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tfalign.evaluate: error:") and needle in err[0], err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.skipif(sys.platform == "darwin", reason="CoreML predicts on macOS")
def test_coreml_on_linux_says_it_needs_macos(tmp_path, capsys):
    assert _evaluate(["--coreml", tmp_path / "m.mlpackage", "--data", "synthetic:2", "--out", tmp_path / "r.json"]) == 2
    assert "only on macOS" in capsys.readouterr().err


def test_unwritable_report_path_fails_before_evaluating(model_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert _evaluate(["--model-dir", model_dir, "--data", "synthetic:2", "--out", blocker / "r.json"]) == 2
    err = capsys.readouterr().err
    assert f"--out {blocker / 'r.json'}: cannot write there" in err
