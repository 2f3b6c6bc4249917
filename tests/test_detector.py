"""tfalign.detector: network build/serialization/TFLite, targets ↔ decode, 5-point box map, the shipped detector."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_net():
    from tfalign.detector import model as dm
    return dm.build(64, widths=(8, 8, 16, 16), fpn=8)


def test_build_forward_shape_and_ranges(tiny_net):
    x = np.random.RandomState(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    y = tiny_net(x, training=False).numpy()
    assert y.shape == (2, 16, 16, 5)
    assert np.all((y[..., 0] > 0) & (y[..., 0] < 1))
    # the heat prior: an untrained net says "no face" almost everywhere
    assert np.median(y[..., 0]) < 0.1


def test_build_rejects_bad_arguments():
    from tfalign.detector import model as dm
    with pytest.raises(ValueError, match="input_size"):
        dm.build(100)
    with pytest.raises(ValueError, match="widths"):
        dm.build(64, widths=(8, 8, 16))


def test_serialization_round_trip(tiny_net):
    from tfalign._keras import keras
    clone = keras.models.model_from_json(tiny_net.to_json())
    clone.set_weights(tiny_net.get_weights())
    x = np.random.RandomState(1).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(clone(x, training=False).numpy(), tiny_net(x, training=False).numpy(), atol=1e-6)


def test_converts_to_builtin_tflite_ops_and_matches_keras(tiny_net):
    from mobile_export import tflite
    data = tflite.convert(tiny_net)
    tflite.check_builtin(data, tiny_net)
    assert not [op for op in tflite.op_names(data) if op.startswith(("CUSTOM", "FLEX"))]
    x = np.random.RandomState(2).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(tflite.Runner(data)(x), tiny_net(x, training=False).numpy(), atol=1e-4)


def test_loss_prefers_the_target():
    from tfalign.detector import model as dm
    from tfalign.detector.train import targets
    heat, reg, mask = targets([(20, 24, 30, 36)], 64)
    good = np.concatenate([np.clip(heat, 0.01, 0.99)[..., None], reg], -1)[None]
    bad = good.copy()
    bad[..., 0] = 0.5
    bad[..., 1:] += 1.0
    lg = [float(v) for v in dm.loss(good, heat[None], reg[None], mask[None])]
    lb = [float(v) for v in dm.loss(bad, heat[None], reg[None], mask[None])]
    assert lg[0] < lb[0] and lg[1] < lb[1] and lg[2] < lb[2] and lg[2] == pytest.approx(0.0, abs=1e-6)


def test_decode_of_targets_gives_the_boxes_back():
    from tfalign import detector as det
    from tfalign.detector.train import targets
    boxes = [(10.0, 12.0, 30.0, 34.0), (70.0, 60.0, 16.0, 18.0)]
    heat, reg, _ = targets(boxes, 128)
    heat[heat == 1.0] = [0.9, 0.8][:int(np.sum(heat == 1.0))]  # distinct scores: a defined order
    out = np.concatenate([heat[..., None], reg], -1)
    found = det.decode(out, scale=0.5, score_threshold=0.5)
    assert len(found) == 2
    got = sorted(b for b, _ in found)
    want = sorted(tuple(v / 0.5 for v in b) for b in boxes)  # scale 0.5: image pixels = canvas / 0.5
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_decode_peaks_threshold_and_overlap_suppression():
    from tfalign import detector as det
    out = np.zeros((1, 32, 32, 5), np.float32)
    out[0, ..., 1:3] = np.log(10 / 4)
    out[0, 10, 7, 0] = 0.9
    out[0, 10, 7, 3:] = (0.25, 0.5)
    out[0, 10, 8, 0] = 0.85   # a neighbour of the peak: not a 3×3 maximum
    out[0, 20, 20, 0] = 0.2   # under the threshold
    found = det.decode(out, score_threshold=0.3)
    assert len(found) == 1
    (x, y, w, h), score = found[0]
    assert score == pytest.approx(0.9)
    assert (x + w / 2, y + h / 2, w, h) == pytest.approx(((7.25) * 4, (10.5) * 4, 10, 10))
    assert len(det.decode(out, score_threshold=0.1)) == 2
    with pytest.raises(ValueError, match="output"):
        det.decode(np.zeros((32, 32, 4)))


def test_decode_keeps_the_face_not_a_part_of_it():
    from tfalign import detector as det
    out = np.zeros((32, 32, 5), np.float32)
    out[16, 16, :3] = (0.35, np.log(60 / 4), np.log(60 / 4))   # the face
    out[12, 14, :3] = (0.45, np.log(12 / 4), np.log(12 / 4))   # an eye inside it, scored higher
    out[4, 28, :3] = (0.40, np.log(10 / 4), np.log(10 / 4))    # a separate small face
    found = det.decode(out, score_threshold=0.3)
    assert [round(b[2]) for b, _ in found] == [10, 60]
    out[16, 16, 0] = 0.31                                       # a face box far less sure than the part loses
    out[12, 14, 0] = 0.9
    assert [round(b[2]) for b, _ in det.decode(out, score_threshold=0.3)] == [12, 10]


def test_letterbox_is_a_pure_scale():
    from tfalign import detector as det
    img = np.zeros((50, 100, 3), np.uint8)
    img[10:20, 40:60] = 255
    x, scale = det.letterbox(img, 64)
    assert x.shape == (64, 64, 3) and scale == pytest.approx(0.64)
    assert np.all(x[40:, :] == det.PAD_VALUE)  # below the image: padding
    ys, xs = np.nonzero(x[..., 0] > 200)
    assert xs.min() == pytest.approx(40 * scale, abs=1) and ys.min() == pytest.approx(10 * scale, abs=1)
    with pytest.raises(ValueError, match="image"):
        det.letterbox(np.zeros((10, 10), np.uint8), 64)


def test_five_point_box_fit_recovers_a_linear_map():
    from tfalign import detector as det
    rng = np.random.default_rng(0)
    base = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], float)
    pts = base[None] * rng.uniform(0.5, 2, (40, 1, 1)) + rng.uniform(0, 100, (40, 1, 2)) \
        + rng.normal(0, 2, (40, 5, 2))
    truth = det.FivePointBox(coef=tuple(rng.normal(0, 0.05, (11, 4)).ravel()))
    boxes = np.array([truth(p) for p in pts])
    fit = det.fit_five_point_box(pts, boxes, ridge=0.0)
    np.testing.assert_allclose([fit(p) for p in pts], boxes, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="F >= 11"):
        det.fit_five_point_box(pts[:5], boxes[:5])
    with pytest.raises(ValueError, match="degenerate"):
        fit(np.zeros((5, 2)))


def test_five_point_box_matches_68_point_boxes_on_lfpw(shared_data):
    from tfalign import detector as det, schemes
    from tfalign.data import geometry
    from tfalign.data.spec import load_records
    root = shared_data / "lfpw" / "trainset"
    to5 = schemes.conversion_matrix("300w_68", "mtfl_5")
    train, val = (load_records(f"300w:{root}#{s}") for s in ("train", "val"))
    fit = det.fit_five_point_box(np.stack([to5 @ r.points for r in train]),
                                 np.stack([geometry.points_box(r.points) for r in train]))
    ious = [det.box_iou_matrix([fit(to5 @ r.points)], [geometry.points_box(r.points)])[0, 0] for r in val]
    assert np.mean(ious) > 0.85  # 0.898 measured; the mean-face similarity fit gets 0.80


def test_shipped_detector_finds_lfpw_validation_faces(shared_data):
    from tfalign import detector as det
    from tfalign.data import geometry
    from tfalign.data.spec import load_records
    from tfalign.detector.train import evaluate
    fd = det.FaceDetector()
    val = load_records(f"300w:{shared_data / 'lfpw' / 'trainset'}#val")[:24]
    res = evaluate(lambda im: [(d.box, d.score) for d in fd.detect(im)], val)
    assert res["recall_iou50_top1"] >= 0.8, res
    # the calibration maps to the contract box: tighter than the uncalibrated box would be if it were off
    import cv2
    img = cv2.cvtColor(cv2.imread(val[0].image_path), cv2.COLOR_BGR2RGB)
    box = fd.best_box(img)
    assert det.box_iou_matrix([box], [geometry.points_box(val[0].points)])[0, 0] > 0.5


def test_shipped_detector_finds_nothing_in_a_flat_image():
    from tfalign import detector as det
    fd = det.FaceDetector()
    assert fd.detect(np.full((120, 160, 3), 90, np.uint8)) == []
    assert fd.best_box(np.full((120, 160, 3), 90, np.uint8)) is None


def test_shipped_folder_has_calibration_and_model_card():
    from tfalign import detector as det
    meta = json.loads((det.WEIGHTS_DIR / det.CALIBRATION_FILE).read_text())
    assert set(meta["calibration"]) >= {"dx", "dy", "sw", "sh", "fitted_on", "command"}
    assert meta["training"]["command"].startswith("python -m tfalign.detector train")
    assert len(meta["five_point_box"]["coef"]) == 44
    card = (det.WEIGHTS_DIR / "model_card.md").read_text()
    assert "research" in card and "python -m tfalign.detector train" in card


def test_detector_folder_errors(tmp_path):
    from tfalign import detector as det
    with pytest.raises(ValueError, match="face_detector.tflite not found"):
        det.FaceDetector(tmp_path)
    (tmp_path / det.MODEL_FILE).write_bytes((det.WEIGHTS_DIR / det.MODEL_FILE).read_bytes())
    (tmp_path / det.CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="bad calibration file"):
        det.FaceDetector(tmp_path)


def test_train_cli_rejects_bad_arguments(tmp_path):
    from tfalign.detector.__main__ import main
    assert main(["train", "--lfpw", str(tmp_path / "none")]) == 2
    assert main(["train", "--lfpw", str(tmp_path), "--steps", "0"]) == 2


@pytest.mark.slow
def test_train_cli_writes_a_loadable_folder(shared_data, tmp_path):
    out = tmp_path / "fd"
    cmd = [sys.executable, "-m", "tfalign.detector", "train", "--lfpw", str(shared_data / "lfpw" / "trainset"),
           "--mtfl", str(shared_data / "mtfl" / "training.txt"), "--max-mtfl", "50", "--steps", "4",
           "--batch", "4", "--log-every", "2", "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    from tfalign import detector as det
    meta = json.loads((out / det.CALIBRATION_FILE).read_text())
    assert meta["training"]["steps"] == 4 and "--max-mtfl 50" in meta["training"]["command"]
    det.FaceDetector(out).detect(np.zeros((40, 50, 3), np.uint8))
