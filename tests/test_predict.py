"""python -m tfalign.predict: outputs per image, refinement, --box, --detector, errors."""
import json
import os

import cv2
import numpy as np
import pytest

from tests import export_helpers as H


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """export_tiny as float32 .tflite + contract, through the exporter's own code path."""
    from mobile_export import export
    folder = tmp_path_factory.mktemp("model")
    loaded = export.load_model(H.NAME, None)
    job = export.Job("tflite", "none", stem="tiny")
    faces = export.Faces(loaded.config.input, check_size=2)
    export.export(loaded, job, str(folder), faces, gate=False)
    return str(folder / "tiny.tflite")


@pytest.fixture
def images(tmp_path):
    from tfalign.data.synthetic import make_records
    paths = []
    for i, rec in enumerate(make_records(2, size=96, seed=5)):
        p = tmp_path / f"face{i}.png"
        cv2.imwrite(str(p), cv2.cvtColor(rec.image, cv2.COLOR_RGB2BGR))
        paths.append(str(p))
    return paths


def test_writes_an_annotated_png_and_json_per_image(exported, images, tmp_path, capsys):
    from tfalign.predict import main
    out = tmp_path / "pred"
    assert main(images + ["--model", exported, "--out", str(out)]) == 0
    for p in images:
        stem = os.path.splitext(os.path.basename(p))[0]
        record = json.loads((out / f"{stem}.landmarks.json").read_text())
        assert len(record["points"]) == 68 and len(record["point_names"]) == 68
        assert record["scheme"] == "300w_68"
        # the default: the trained detector, or the portrait prior when it finds no face (said so)
        assert record["detector"] in ("detector", "portrait (the detector found no face)")
        assert (record["detector_score"] is not None) == (record["detector"] == "detector")
        png = cv2.imread(str(out / f"{stem}.landmarks.png"))
        assert png.shape == (96, 96, 3)
        assert not np.array_equal(png, cv2.imread(p))  # something was drawn


def test_points_match_the_runtime_for_a_given_box(exported, images, tmp_path):
    from tfalign.predict import main
    from tfalign.runtime import LandmarkModel
    out = tmp_path / "pred"
    assert main([images[0], "--model", exported, "--out", str(out), "--box", "20,22,50,48", "--refine", "0"]) == 0
    record = json.loads((out / "face0.landmarks.json").read_text())
    rgb = cv2.cvtColor(cv2.imread(images[0]), cv2.COLOR_BGR2RGB)
    expected = LandmarkModel(exported).predict(rgb, (20, 22, 50, 48))
    np.testing.assert_allclose(record["points"], expected, atol=1e-4)
    assert record["detector"] == "box" and record["box"] == [20, 22, 50, 48]


class _Fixed:
    """A runner that answers with the same shape relative to the box it is given (a well-behaved model)."""

    def __init__(self, shrink):
        self.shrink = shrink
        self.boxes = []

    def predict(self, image, box):
        self.boxes.append(tuple(box))
        x, y, w, h = box
        cx, cy = x + w / 2, y + h / 2
        return np.array([[cx - w * self.shrink / 2, cy - h * self.shrink / 2],
                         [cx + w * self.shrink / 2, cy + h * self.shrink / 2]])


def test_refinement_recrops_on_the_predicted_box_and_stops_on_degenerate_answers():
    from tfalign.predict import predict_image
    image = np.zeros((10, 10, 3), np.uint8)
    good = _Fixed(0.9)
    _, box, steps = predict_image(good, image, (0, 0, 100, 100), refine=2)
    assert steps == 2 and len(good.boxes) == 3 and box[2] == pytest.approx(81)
    collapsed = _Fixed(0.01)
    _, box, steps = predict_image(collapsed, image, (0, 0, 100, 100), refine=2)
    assert steps == 0 and box == (0, 0, 100, 100)


def test_portrait_detector_starts_from_the_portrait_prior(exported, images, tmp_path):
    from tfalign import detect
    from tfalign.predict import main
    out = tmp_path / "pred"
    assert main([images[0], "--model", exported, "--out", str(out), "--detector", "portrait"]) == 0
    record = json.loads((out / "face0.landmarks.json").read_text())
    assert record["detector"] == "portrait" and record["detector_score"] is None
    assert record["start_box"] == pytest.approx(list(detect.portrait_box((96, 96, 3))))


def test_default_detector_finds_the_face_of_a_real_lfpw_validation_image(exported, shared_data, tmp_path):
    from tfalign import detect
    from tfalign.data import geometry
    from tfalign.data.spec import load_records
    from tfalign.predict import main
    rec = load_records(f"300w:{shared_data / 'lfpw' / 'trainset'}#val")[0]
    out = tmp_path / "pred"
    assert main([rec.image_path, "--model", exported, "--out", str(out), "--refine", "0"]) == 0
    stem = os.path.splitext(os.path.basename(rec.image_path))[0]
    record = json.loads((out / f"{stem}.landmarks.json").read_text())
    assert record["detector"] == "detector" and record["detector_score"] > 0.3
    assert detect.box_iou(record["start_box"], geometry.points_box(rec.points)) > 0.5


def test_errors_are_one_line_exit_2(exported, images, tmp_path, capsys):
    from tfalign.predict import main
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff not really a jpeg")
    cases = [([str(tmp_path / "missing.jpg"), "--model", exported], "missing.jpg: cannot read the image"),
             ([str(corrupt), "--model", exported], "corrupt.jpg: cannot read the image"),
             ([images[0], "--model", str(tmp_path / "none.tflite")], "none.tflite: model file not found"),
             ([images[0], "--model", exported, "--box", "1,2,3"], "--box"),
             ([images[0], "--model", exported, "--refine", "-1"], "--refine")]
    for argv, message in cases:
        assert main(argv + ["--out", str(tmp_path / "o")]) == 2
        err = H.filter_noise(capsys.readouterr().err)
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
