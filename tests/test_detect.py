"""tfalign.detect: box calibration fit/apply, the portrait prior measured on LFPW, find_face, --box parsing."""
import numpy as np
import pytest


def test_fit_recovers_a_known_mapping():
    from tfalign.detect import BoxCalibration, fit_calibration
    rng = np.random.default_rng(0)
    det = np.column_stack([rng.uniform(0, 100, (50, 2)), rng.uniform(20, 200, (50, 2))])
    true = BoxCalibration(dx=0.1, dy=0.2, sw=0.8, sh=0.9)
    tight = np.array([true.apply(d) for d in det])
    fit = fit_calibration(det, tight)
    assert (fit.dx, fit.dy, fit.sw, fit.sh) == pytest.approx((0.1, 0.2, 0.8, 0.9))


def test_iou():
    from tfalign.detect import box_iou
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_portrait_prior_finds_lfpw_validation_faces(shared_data):
    from tfalign.data import geometry
    from tfalign.data.readers import image_size
    from tfalign.data.spec import load_records
    from tfalign.detect import box_iou, portrait_box
    val = load_records(f"300w:{shared_data / 'lfpw' / 'trainset'}#val")
    ious = []
    for r in val:
        w, h = image_size(r.image_path)
        ious.append(box_iou(portrait_box((h, w, 3)), geometry.points_box(r.points)))
    assert len(ious) > 50
    assert np.median(ious) >= 0.85  # bench/detect_calibration.py measured 0.883


def test_identity_and_errors():
    from tfalign.detect import IDENTITY, parse_box, portrait_box
    assert IDENTITY.apply((1, 2, 3, 4)) == (1.0, 2.0, 3.0, 4.0)
    assert parse_box("1,2.5,30,40") == (1.0, 2.5, 30.0, 40.0)
    for bad in ("1,2,3", "a,b,c,d", "0,0,-1,5", "0,0,nan,5"):
        with pytest.raises(ValueError, match="--box"):
            parse_box(bad)
    with pytest.raises(ValueError, match="width and height"):
        IDENTITY.apply((0, 0, 0, 5))
    with pytest.raises(ValueError, match="empty image"):
        portrait_box((0, 10))


def test_find_face_methods():
    from tfalign import detect
    flat = np.full((80, 60, 3), 100, np.uint8)
    assert detect.find_face(flat, "portrait") == (detect.portrait_box(flat.shape), "portrait", None)
    # nothing to find: the detector falls back to the portrait prior and says so
    box, how, score = detect.find_face(flat)
    assert box == detect.portrait_box(flat.shape) and how.startswith("portrait (") and score is None
    with pytest.raises(ValueError, match="--detector"):
        detect.find_face(flat, "haar")


def test_find_face_detector_on_lfpw_validation_faces(shared_data):
    import cv2

    from tfalign import detect
    from tfalign.data import geometry
    from tfalign.data.spec import load_records
    val = load_records(f"300w:{shared_data / 'lfpw' / 'trainset'}#val")[:12]
    ious = []
    for r in val:
        img = cv2.cvtColor(cv2.imread(r.image_path), cv2.COLOR_BGR2RGB)
        box, how, score = detect.find_face(img)
        assert how == "detector" and 0 < score <= 1
        ious.append(detect.box_iou(box, geometry.points_box(r.points)))
    assert np.median(ious) > 0.6
