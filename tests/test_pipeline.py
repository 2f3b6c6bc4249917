import dataclasses

import cv2
import numpy as np
import pytest

from tfalign import schemes
from tfalign.data import geometry
from tfalign.data.pipeline import AugmentConfig, flip_permutation, make_dataset
from tfalign.data.records import DataError, FaceRecord
from tfalign.data.synthetic import make_records
from tfalign.models.base import InputSpec

GEOMETRY_ONLY = dataclasses.replace(AugmentConfig.none(), box_shift=0.1, box_scale=0.1, rotation=30.0,
                                    scale=(0.8, 1.2), translate=0.1, flip=0.5)


def _batches(ds):
    return [{k: v.numpy() for k, v in b.items()} for b in ds]


def _dot_record(i):
    """Five points on a black image, a bright blob on the left eye (point 0) only."""
    rng = np.random.default_rng(i)
    c = rng.uniform(50, 70, 2)
    pts = c + np.array([[-12, -8], [12, -8], [0, 3], [-9, 13], [9, 13]]) + rng.uniform(-1, 1, (5, 2))
    pts = np.round(pts)
    img = np.zeros((120, 120, 3), np.uint8)
    img[int(pts[0, 1]), int(pts[0, 0])] = 255
    img = cv2.GaussianBlur(img, (0, 0), 1.2)
    img = (img.astype(np.float32) * (255.0 / img.max())).astype(np.uint8)
    return FaceRecord("", pts, "mtfl_5", image=img, source=f"dot{i}")


def test_augmented_points_stay_on_the_image_content_and_flip_uses_the_permutation():
    spec = InputSpec(height=48, width=48, schemes=("mtfl_5",), mean=0.0, std=1.0, crop_scale=2.5)
    recs = [_dot_record(i) for i in range(16)]
    flips = checked = 0
    for b in _batches(make_dataset(recs, spec, training=True, batch_size=8, augment=GEOMETRY_ONLY, seed=4)):
        for img, pts, aff in zip(b["image"], b["points"], b["crop_affine"]):
            flipped = np.linalg.det(aff[:, :2]) < 0
            flips += flipped
            # A mirrored face: the image-left eye is the old right one, so the blob is now point 1.
            k = 1 if flipped else 0
            iy, ix = np.unravel_index(np.argmax(img[..., 0]), img.shape[:2])
            x, y = geometry.normalized_to_pixel(pts[k], 48, 48)
            if not (1 <= x <= 46 and 1 <= y <= 46):
                continue  # augmented out of the crop: nothing to see
            checked += 1
            assert abs(ix - x) <= 1.0 and abs(iy - y) <= 1.0, (ix, iy, x, y, flipped)
    assert 0 < flips < 16 and checked >= 12


def test_flip_is_a_mirror_reindexed_by_each_schemes_permutation():
    recs = make_records(3, seed=2, size=96)
    spec = InputSpec(height=32, width=32, schemes=("300w_68", "mtfl_5"))
    plain = _batches(make_dataset(recs, spec, training=False, batch_size=3))[0]
    always = dataclasses.replace(AugmentConfig.none(), flip=1.0)
    flipped = _batches(make_dataset(recs, spec, training=True, batch_size=3, augment=always, shuffle=False))[0]
    perm = flip_permutation(spec.schemes)
    assert list(perm[68:]) == [68 + i for i in schemes.get_scheme("mtfl_5").flip_permutation]
    expect = plain["points"][:, perm]
    expect[..., 0] = 1.0 - expect[..., 0]
    np.testing.assert_allclose(flipped["points"], expect, atol=1e-5)
    np.testing.assert_allclose(flipped["image"], plain["image"][:, :, ::-1], atol=1e-5)


def test_masks_for_mixed_schemes():
    def frontal(recs):
        # Yaw moves the jaw (the back of the face) against the eyes and mouth: only near-frontal 5-point faces
        # can get the 68-point crop from a 2D mean face.
        return [r for r in recs if np.all(np.abs(r.attributes["pose_pyr"][:2]) < np.deg2rad([10, 6]))][:2]

    r68 = frontal(make_records(80, seed=1, size=64))
    r5 = frontal(make_records(80, scheme="mtfl_5", seed=1, size=64))
    assert len(r5) == 2
    spec = InputSpec(height=32, width=32, schemes=("300w_68", "mtfl_5"))
    b = _batches(make_dataset(r68 + r5, spec, training=False, batch_size=4))[0]
    np.testing.assert_array_equal(b["mask"][:2], 1.0)
    np.testing.assert_array_equal(b["mask"][2:, :68], 0.0)
    np.testing.assert_array_equal(b["mask"][2:, 68:], 1.0)
    np.testing.assert_array_equal(b["points"][2:, :68], 0.0)
    # The 68-point faces also fill the 5-point segment, through the scheme conversion.
    np.testing.assert_allclose(b["points"][:2, 68:], schemes.convert(b["points"][:2, :68], "300w_68", "mtfl_5"),
                               atol=1e-5)
    # Same (near-frontal) faces, about the same crop: a 5-point face's box is estimated from the mean face.
    np.testing.assert_allclose(b["points"][2:, 68:], b["points"][:2, 68:], atol=0.05)


def test_unreachable_scheme_is_a_data_error_naming_the_record():
    spec = InputSpec(height=32, width=32, schemes=("300w_68",))
    with pytest.raises(DataError, match="synthetic:seed=0:0.*mtfl_5"):
        make_dataset(make_records(1, scheme="mtfl_5", size=64), spec, training=False, batch_size=1)


def test_deterministic_mode_repeats_exactly_and_seed_matters():
    recs = make_records(6, seed=5, size=64)
    spec = InputSpec(height=32, width=32)
    run = lambda seed: _batches(make_dataset(recs, spec, training=True, batch_size=2, seed=seed,  # noqa: E731
                                             deterministic=True))
    a, b, c = run(1), run(1), run(2)
    assert len(a) == 3
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not all(np.array_equal(x["image"], z["image"]) for x, z in zip(a, c))


def test_repeat_reshuffles_each_epoch_and_covers_every_face():
    recs = make_records(5, seed=5, size=64)
    spec = InputSpec(height=16, width=16)
    ds = make_dataset(recs, spec, training=True, batch_size=5, repeat=True, deterministic=True)
    e1, e2, e3 = [b["index"].numpy() for b in ds.take(3)]
    assert sorted(e1) == sorted(e2) == sorted(e3) == list(range(5))
    assert not (np.array_equal(e1, e2) and np.array_equal(e2, e3))


def test_evaluation_is_the_inference_preprocessing():
    recs = make_records(3, seed=9, size=96)
    spec = InputSpec(height=40, width=40, channels=1)
    b = _batches(make_dataset(recs, spec, training=False, batch_size=4, cache=True))[0]
    assert b["image"].shape == (3, 40, 40, 1)  # training=False keeps the remainder
    for i, r in enumerate(recs):
        x, affine = geometry.preprocess(r.image, r.points_box(), spec)
        np.testing.assert_array_equal(b["image"][i], x)
        np.testing.assert_allclose(b["crop_affine"][i], affine, atol=1e-5)
        np.testing.assert_allclose(geometry.points_to_image(b["points"][i], affine, spec), r.points, atol=1e-3)


def test_pose_follows_rotation_and_flip():
    recs = make_records(4, seed=3, size=64)
    spec = InputSpec(height=16, width=16, extras=("pose",))
    flip = dataclasses.replace(AugmentConfig.none(), flip=1.0)
    b = _batches(make_dataset(recs, spec, training=True, batch_size=4, augment=flip, shuffle=False))[0]
    pose = np.array([r.attributes["pose_pyr"] for r in recs], np.float32)
    np.testing.assert_allclose(b["pose"], pose * [1, -1, -1], atol=1e-6)
    np.testing.assert_array_equal(b["pose_mask"], 1.0)
    rot = dataclasses.replace(AugmentConfig.none(), rotation=30.0)
    b = _batches(make_dataset(recs, spec, training=True, batch_size=4, augment=rot, shuffle=False))[0]
    angle = np.arctan2(b["crop_affine"][:, 1, 0], b["crop_affine"][:, 0, 0])
    np.testing.assert_allclose(b["pose"][:, 2], pose[:, 2] + angle, atol=1e-5)


def test_pair_views_are_related_by_the_affine():
    recs = make_records(4, seed=4, size=64) + make_records(2, scheme="mtfl_5", seed=4, size=64)
    spec = InputSpec(height=24, width=24, schemes=("300w_68", "mtfl_5"), pair=True)
    seen_mirror = False
    for b in _batches(make_dataset(recs, spec, training=True, batch_size=3, augment=GEOMETRY_ONLY, seed=1)):
        assert not np.array_equal(b["image"], b["image2"])
        for p1, p2, m1, m2, a, idx in zip(b["points"], b["points2"], b["mask"], b["mask2"], b["affine"],
                                          b["pair_index"]):
            seen_mirror |= not np.array_equal(idx, np.arange(73))
            np.testing.assert_array_equal(m2, m1[idx])
            mapped = p1[idx] @ a[:, :2].T + a[:, 2]
            np.testing.assert_allclose(mapped[m2 > 0], p2[m2 > 0], atol=1e-4)
    assert seen_mirror


def test_photometric_augmentation_changes_pixels_not_points():
    recs = make_records(2, seed=6, size=64)
    spec = InputSpec(height=32, width=32)
    photo = dataclasses.replace(AugmentConfig(), box_shift=0.0, box_scale=0.0, rotation=0.0, scale=(1.0, 1.0),
                                translate=0.0, flip=0.0, occlusion=1.0, blur=1.0)
    a = _batches(make_dataset(recs, spec, training=True, batch_size=2, augment=photo, shuffle=False))[0]
    e = _batches(make_dataset(recs, spec, training=False, batch_size=2))[0]
    np.testing.assert_allclose(a["points"], e["points"], atol=1e-5)
    assert np.abs(a["image"] - e["image"]).mean() > 0.05


def test_bad_arguments():
    recs = make_records(1, size=64)
    spec = InputSpec(height=16, width=16)
    with pytest.raises(ValueError, match="records"):
        make_dataset([], spec, training=True, batch_size=1)
    with pytest.raises(ValueError, match="batch_size"):
        make_dataset(recs, spec, training=True, batch_size=0)
    with pytest.raises(ValueError, match="seed"):
        make_dataset(recs, spec, training=True, batch_size=1, seed=-1)
    with pytest.raises(ValueError, match="extras"):
        make_dataset(recs, InputSpec(height=16, width=16, extras=("depth",)), training=True, batch_size=1)
    with pytest.raises(ValueError, match="augment.flip"):
        AugmentConfig(flip=2.0)
    missing = FaceRecord("/nonexistent/face.jpg", recs[0].points, "300w_68")
    with pytest.raises(DataError, match="/nonexistent/face.jpg"):
        make_dataset([missing], spec, training=True, batch_size=1)


def test_real_lfpw_faces(shared_data):
    from tfalign.data.spec import load_records
    recs = load_records(f"300w:{shared_data / 'lfpw' / 'trainset'}")[:4]
    spec = InputSpec(height=64, width=64)
    b = _batches(make_dataset(recs, spec, training=True, batch_size=4, seed=0))[0]
    assert b["image"].shape == (4, 64, 64, 3) and np.isfinite(b["image"]).all()
    e = _batches(make_dataset(recs, spec, training=False, batch_size=4))[0]
    # Evaluation crops: the tight 68-point box with 1.25 context puts every point in [0.1, 0.9].
    assert e["points"].min() >= 0.099 and e["points"].max() <= 0.901


def test_fused_colour_jitter_equals_the_step_by_step_definition():
    from tfalign.data.pipeline import photometric
    aug = dataclasses.replace(AugmentConfig.none(), brightness=0.3, contrast=0.3, saturation=0.3)
    img = np.random.default_rng(0).integers(40, 200, (16, 16, 3), dtype=np.uint8)
    out = photometric(np.random.default_rng(5), img, aug)
    rng = np.random.default_rng(5)
    rng.random(), rng.random()  # the occlusion and blur draws
    b, c, s = (rng.uniform(0.7, 1.3) for _ in range(3))
    x = img.astype(np.float64) * b
    x = (x - x.mean()) * c + x.mean()
    g = (x @ [0.299, 0.587, 0.114])[..., None]
    x = (x - g) * s + g
    assert np.abs(np.clip(np.round(x), 0, 255) - out).max() <= 1


def test_augment_config_round_trips_through_json_config():
    import json

    from tfalign import config as cfg_lib
    cfg = dataclasses.replace(AugmentConfig(), rotation=15.0, scale=(0.9, 1.1))
    back = cfg_lib.from_dict(AugmentConfig, json.loads(json.dumps(cfg_lib.to_dict(cfg))))
    assert back == cfg
    with pytest.raises(ValueError, match="augment.scale"):
        cfg_lib.from_dict(AugmentConfig, {"scale": [1.2, 0.8]})
