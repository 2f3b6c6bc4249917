"""tfalign.video: tracking from the previous landmarks, the crop-consistency confidence, re-detection, smoothing,
and ``python -m tfalign.predict VIDEO`` (JSON per frame + overlay .mp4)."""
import json
import math
import os
import types

import cv2
import numpy as np
import pytest

from tests import export_helpers as H
from tfalign import api, video
from tfalign.data import geometry
from tfalign.smoothing import LandmarkSmoother

SIZE = 160


def _face(seed=3, size=96):
    from tfalign.data.synthetic import make_records
    rec = make_records(1, size=size, seed=seed)[0]
    return rec.image, np.asarray(rec.points, np.float64)


def _frames(n, step=2.0, start=(20, 24)):
    """A face pasted into a bigger frame, moving ``step`` px right per frame: (RGB frames, true points)."""
    face, points = _face()
    frames, truth = [], []
    for k in range(n):
        x, y = int(start[0] + step * k), start[1]
        frame = np.full((SIZE, SIZE, 3), 40, np.uint8)
        frame[y:y + face.shape[0], x:x + face.shape[1]] = face
        frames.append(frame)
        truth.append(points + [x, y])
    return frames, truth


class FakeRunner:
    """A backend stand-in: per frame, either the true points (a model that sees the face: answers in image
    coordinates whatever the crop) or 'blind' (a face-shaped guess tied to the crop, as a model that sees no face)."""

    kind = "fake"
    scheme_name = "300w_68"

    def __init__(self, truth, blind=()):
        self.truth, self.blind, self.frame, self.calls = truth, set(blind), 0, []
        template = truth[0] - truth[0].min(0)
        self.template = template / template.max()  # in [0, 1] of the box

    def predict(self, image, box):
        self.calls.append((self.frame, tuple(box)))
        if self.frame in self.blind:
            x, y, w, h = box
            return self.template * [w, h] + [x, y]
        return np.array(self.truth[self.frame], np.float64)


def _track(runner, frames, **options):
    tracker = api.Landmarker(runner, "fake").tracker(**options)
    out = []
    for k, frame in enumerate(frames):
        runner.frame = k
        out.append(tracker.update(frame))
    return out


def test_each_box_is_the_previous_frames_raw_landmark_box():
    frames, truth = _frames(6, step=6.0)
    runner = FakeRunner(truth)
    results = _track(runner, frames)
    assert [r.redetected for r in results] == [True] + [False] * 5
    assert all(r.face is not None and r.confidence == 1.0 for r in results)
    for k in range(1, 6):
        first_box = next(box for frame, box in runner.calls if frame == k)
        assert first_box == pytest.approx(geometry.points_box(truth[k - 1]))  # raw, never the smoothed points
        np.testing.assert_allclose(results[k].raw_points, truth[k], atol=1e-4)
        assert results[k].face.box == pytest.approx(geometry.points_box(truth[k - 1]))
    assert np.abs(results[-1].face.points - truth[-1]).max() > 0.01  # smoothing lags: the two differ


def test_the_consistency_check_runs_on_a_shifted_crop():
    frames, truth = _frames(2)
    runner = FakeRunner(truth)
    _track(runner, frames, smooth=False, check_shift=0.2)
    boxes = [box for frame, box in runner.calls if frame == 1]
    assert len(boxes) == 2  # the tracked crop and the consistency crop, nothing more
    x, y, w, h = boxes[0]
    assert boxes[1] == pytest.approx((x + 0.2 * max(w, h), y + 0.2 * max(w, h), w, h))


def test_a_model_that_sees_no_face_is_never_tracked():
    frames, truth = _frames(4)
    results = _track(FakeRunner(truth, blind=range(4)), frames)
    assert all(r.face is None and r.redetected for r in results)
    assert all(r.confidence == pytest.approx(0.0, abs=1e-6) for r in results)


def test_a_lost_face_is_redetected_and_the_smoother_restarts():
    frames, truth = _frames(10)
    truth = [t + ([30.0, 0.0] if k >= 7 else 0.0) for k, t in enumerate(truth)]  # the face jumps after the loss
    results = _track(FakeRunner(truth, blind={5, 6}), frames)
    assert [r.face is not None for r in results] == [True] * 5 + [False] * 2 + [True] * 3
    assert [r.redetected for r in results] == [True] + [False] * 4 + [True] * 3 + [False] * 2
    np.testing.assert_allclose(results[7].face.points, truth[7], atol=1e-4)  # first sample of a new track
    assert results[5].raw_points is None and math.isnan(results[6].confidence) is False


def test_points_leaving_the_frame_count_as_lost():
    frames, truth = _frames(3)
    truth[2] = truth[2] + [SIZE, 0.0]  # every point right of the frame
    results = _track(FakeRunner(truth), frames, smooth=False)
    assert results[1].face is not None and results[2].face is None
    assert results[2].confidence == 1.0  # consistent, but outside: max_outside decides


def test_smoothing_uses_the_given_parameters_and_clock():
    frames, truth = _frames(8)
    rng = np.random.default_rng(0)
    truth = [t + rng.normal(0, 0.8, t.shape) for t in truth]
    params = {"min_cutoff": 0.3, "beta": 5.0, "d_cutoff": 2.0}
    results = _track(FakeRunner(truth), frames, fps=25.0, **params)
    reference = LandmarkSmoother(**params)
    for k, r in enumerate(results):
        assert r.time == pytest.approx(k / 25.0)
        np.testing.assert_allclose(r.raw_points, truth[k], atol=1e-4)
        np.testing.assert_allclose(r.face.points, reference(k / 25.0, truth[k]), atol=1e-4)
    assert np.abs(results[-1].face.points - truth[-1]).max() > 0.05  # it did smooth


def test_explicit_timestamps_and_raw_mode():
    frames, truth = _frames(3)
    runner = FakeRunner(truth)
    tracker = api.Landmarker(runner, "fake").tracker(smooth=False)
    for k, t in enumerate([0.0, 0.5, 0.7]):
        runner.frame = k
        r = tracker.update(frames[k], t=t)
        assert r.time == t and r.index == k
        np.testing.assert_array_equal(r.face.points, r.raw_points)


def test_start_box_and_custom_detector():
    frames, truth = _frames(2)
    runner = FakeRunner(truth)
    _track(runner, frames[:1], box=(10, 12, 90, 95), refine=0)
    assert runner.calls[0] == (0, (10.0, 12.0, 90.0, 95.0))
    seen = []
    results = _track(FakeRunner(truth), frames, detector=lambda img: seen.append(img.shape) or None)
    assert seen == [(SIZE, SIZE, 3)] * 2 and all(r.face is None and math.isnan(r.confidence) for r in results)


@pytest.mark.parametrize("options, error, message", [
    ({"min_cutoff": 0}, ValueError, "one-euro"), ({"beta": -1}, ValueError, "one-euro"),
    ({"fps": 0}, ValueError, "fps: expected > 0"), ({"min_confidence": 1.5}, ValueError, "min_confidence"),
    ({"max_outside": -0.1}, ValueError, "max_outside"), ({"check_shift": 0}, ValueError, "check_shift"),
    ({"refine": -1}, ValueError, "refine"), ({"color": "bgr"}, ValueError, "color"),
    ({"box": (1, 2, 3)}, ValueError, "box"), ({"box": [(0, 0, 5, 5), (1, 1, 5, 5)]}, ValueError, "one"),
    ({"detector": "haar"}, TypeError, "detector: expected a callable"),
])
def test_bad_tracker_options_name_themselves(options, error, message):
    frames, truth = _frames(1)
    with pytest.raises(error, match=message):
        api.Landmarker(FakeRunner(truth), "fake").tracker(**options)


def test_bad_frames_name_the_frame():
    frames, truth = _frames(2)
    tracker = api.Landmarker(FakeRunner(truth), "fake").tracker()
    tracker.update(frames[0])
    with pytest.raises(ValueError, match="frame 1: expected uint8"):
        tracker.update(frames[1].astype(np.float32))


# --- real model, video files, CLI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """export_tiny as float32 .tflite + contract, through the exporter's own code path."""
    from mobile_export import export
    folder = tmp_path_factory.mktemp("model")
    loaded = export.load_model(H.NAME, None)
    faces = export.Faces(loaded.config.input, check_size=2)
    export.export(loaded, export.Job("tflite", "none", stem="tiny"), str(folder), faces, gate=False)
    return str(folder / "tiny.tflite")


def _write_video(path, frames, fps=10.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (SIZE, SIZE))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


def _count_frames(path):
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    return n, shape, cap.get(cv2.CAP_PROP_FPS)


def test_predict_video_writes_points_per_frame_and_an_overlay_video(exported, tmp_path, capsys):
    from tfalign.predict import main
    clip = _write_video(tmp_path / "clip.mp4", _frames(9)[0])
    out = tmp_path / "pred"
    assert main([clip, "--model", exported, "--out", str(out), "--beta", "10", "--min-confidence", "0"]) == 0
    record = json.loads((out / "clip.landmarks.json").read_text())
    assert record["frames"] == 9 and len(record["per_frame"]) == 9 and record["fps"] == 10.0
    assert record["tracking"]["beta"] == 10.0 and record["tracking"]["min_confidence"] == 0.0
    assert record["scheme"] == "300w_68" and len(record["point_names"]) == 68
    assert record["tracked_frames"] == 9 and record["per_frame"][0]["redetected"]  # min-confidence 0: never lost
    for k, frame in enumerate(record["per_frame"]):
        assert frame["index"] == k and frame["time"] == pytest.approx(k / 10.0)
        assert np.asarray(frame["points"]).shape == (68, 2) and np.asarray(frame["raw_points"]).shape == (68, 2)
    n, shape, fps = _count_frames(out / "clip.landmarks.mp4")
    assert (n, shape, fps) == (9, (SIZE, SIZE, 3), 10.0)
    assert sorted(os.listdir(out)) == ["clip.landmarks.json", "clip.landmarks.mp4"]  # no temporary files left
    assert "9/9 frames tracked" in capsys.readouterr().out


def test_the_overlay_is_drawn_on_tracked_frames(exported, tmp_path):
    from tfalign.predict import main
    frames = _frames(3)[0]
    clip = _write_video(tmp_path / "clip.avi", frames)
    out = tmp_path / "pred"
    assert main([clip, "--model", exported, "--out", str(out), "--min-confidence", "0"]) == 0
    cap_in, cap_out = cv2.VideoCapture(clip), cv2.VideoCapture(str(out / "clip.landmarks.mp4"))
    ok_in, original = cap_in.read()
    ok_out, drawn = cap_out.read()
    assert ok_in and ok_out
    # green points: many pixels far greener than anything in the input frame
    greener = (drawn[:, :, 1].astype(int) - drawn[:, :, 2]) - (original[:, :, 1].astype(int) - original[:, :, 2])
    assert (greener > 100).sum() > 50


def test_images_and_videos_in_one_call_and_no_video_flag(exported, tmp_path):
    from tfalign.predict import main
    frames = _frames(3)[0]
    clip = _write_video(tmp_path / "clip.mp4", frames)
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    out = tmp_path / "pred"
    assert main([str(image), clip, "--model", exported, "--out", str(out), "--no-video", "--no-smooth"]) == 0
    assert sorted(os.listdir(out)) == ["clip.landmarks.json", "still.landmarks.json", "still.landmarks.png"]
    record = json.loads((out / "clip.landmarks.json").read_text())
    assert record["video_out"] is None and record["tracking"]["smooth"] is False
    for frame in record["per_frame"]:
        if frame["tracked"]:
            assert frame["points"] == frame["raw_points"]


@pytest.mark.parametrize("flags, message", [
    (["--beta", "-1"], "--beta: must be >= 0"), (["--min-cutoff", "0"], "--min-cutoff: must be > 0"),
    (["--d-cutoff", "nan"], "--d-cutoff"), (["--fps", "0"], "--fps: must be > 0"),
    (["--min-confidence", "2"], "--min-confidence: must be in [0, 1]"),
])
def test_bad_video_flags_exit_2_with_one_line(exported, tmp_path, capsys, flags, message):
    from tfalign.predict import main
    clip = _write_video(tmp_path / "clip.mp4", _frames(2)[0])
    assert main([clip, "--model", exported, "--out", str(tmp_path / "pred")] + flags) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "pred").exists()


def test_an_unreadable_video_fails_before_any_output(exported, tmp_path, capsys):
    from tfalign.predict import main
    fake = tmp_path / "broken.mp4"
    fake.write_text("not a video")
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    assert main([str(image), str(fake), "--model", exported, "--out", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.mp4" in err
    assert not (tmp_path / "pred").exists()


def test_track_takes_a_video_path_or_a_list_of_frames(exported, tmp_path):
    model = api.load(exported)
    frames = _frames(4)[0]
    clip = _write_video(tmp_path / "clip.mp4", frames, fps=5.0)
    from_file = model.track(clip, min_confidence=0.0)
    assert len(from_file) == 4 and from_file[1].time == pytest.approx(0.2)
    from_list = model.track(frames, fps=5.0, min_confidence=0.0)
    assert [r.time for r in from_list] == [r.time for r in from_file]
    # mp4v is lossy, so the file's points differ a little from the pristine frames'
    np.testing.assert_allclose(from_file[3].raw_points, from_list[3].raw_points, atol=2.0)
    with pytest.raises(TypeError, match="frames: expected a video file path or an iterable"):
        model.track(5)
    with pytest.raises(ValueError, match="video not found"):
        model.track(str(tmp_path / "missing.mp4"))


def test_an_aborted_video_leaves_nothing(tmp_path):
    writer = video.VideoWriter(str(tmp_path / "out.mp4"), 10.0, (32, 24))
    writer.write(np.zeros((24, 32, 3), np.uint8))
    writer.abort()
    assert os.listdir(tmp_path) == []


def test_is_video_by_extension():
    assert video.is_video("a/B.MP4") and video.is_video("x.avi") and not video.is_video("face.png")


def test_to_dict_is_json_ready():
    frames, truth = _frames(1)
    r = _track(FakeRunner(truth), frames)[0]
    d = json.loads(json.dumps(r.to_dict()))
    assert d["tracked"] and len(d["points"]) == 68 and d["confidence"] == 1.0
    lost = video.TrackedFrame(0, 0.0, None, None, float("nan"), True).to_dict()
    assert lost == {"index": 0, "time": 0.0, "tracked": False, "redetected": True, "confidence": None}
