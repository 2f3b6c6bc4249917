import cv2
import numpy as np
import pytest

from tfalign import schemes
from tfalign.data import geometry
from tfalign.models.base import InputSpec


def test_square_crop_hand_computed():
    assert geometry.square_crop((10, 20, 40, 80), 1.25) == (30.0, 60.0, 100.0)
    cx, cy, side = geometry.square_crop((10, 20, 40, 80), 1.0, shift=(0.1, -0.2))
    assert (cx, cy, side) == pytest.approx((30 + 8.0, 60 - 16.0, 80.0))


def test_crop_edges_map_to_normalised_0_and_1():
    spec = InputSpec(height=32, width=48, crop_scale=1.0)
    affine = geometry.box_affine((10, 20, 40, 40), spec)
    u = geometry.points_to_crop(np.array([[10.0, 20.0], [50.0, 60.0], [30.0, 40.0]]), affine, spec)
    np.testing.assert_allclose(u, [[0, 0], [1, 1], [0.5, 0.5]], atol=1e-6)


def test_crop_covering_the_image_is_the_identity():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    spec = InputSpec(height=40, width=40, crop_scale=1.0, mean=0.0, std=1.0)
    # The image spans [-0.5, 39.5] in pixel-centre coordinates.
    x, affine = geometry.preprocess(img, (-0.5, -0.5, 40, 40), spec)
    np.testing.assert_allclose(affine, [[1, 0, 0], [0, 1, 0]], atol=1e-6)
    np.testing.assert_array_equal(x, img.astype(np.float32))


def test_points_round_trip_image_crop_image():
    spec = InputSpec(height=64, width=64)
    affine = geometry.box_affine((13.3, 7.1, 50.2, 61.0), spec)
    p = np.random.default_rng(1).uniform(0, 80, (20, 2))
    back = geometry.points_to_image(geometry.points_to_crop(p, affine, spec), affine, spec)
    np.testing.assert_allclose(back, p, atol=1e-3)


def test_preprocess_puts_a_dot_where_the_point_maps():
    img = np.zeros((120, 100, 3), np.uint8)
    dot = np.array([63.0, 41.0])
    img[41, 63] = 255
    img = cv2.GaussianBlur(img, (0, 0), 2.0)
    spec = InputSpec(height=48, width=48)
    box = (30, 20, 45, 50)
    x, affine = geometry.preprocess(img, box, spec)
    crop = x[..., 0]
    iy, ix = np.unravel_index(np.argmax(crop), crop.shape)
    expect = geometry.normalized_to_pixel(geometry.points_to_crop(dot, affine, spec), 48, 48)
    assert abs(ix - expect[0]) <= 1 and abs(iy - expect[1]) <= 1


def test_normalisation_and_grayscale():
    img = np.full((20, 20, 3), (200, 100, 50), np.uint8)
    x, _ = geometry.preprocess(img, (5, 5, 10, 10), InputSpec(height=8, width=8, mean=127.5, std=127.5))
    np.testing.assert_allclose(x[4, 4], (np.array([200, 100, 50]) - 127.5) / 127.5, atol=1e-6)
    g, _ = geometry.preprocess(img, (5, 5, 10, 10), InputSpec(height=8, width=8, channels=1, mean=0, std=1))
    assert g.shape == (8, 8, 1)
    assert g[4, 4, 0] == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50, abs=1)
    assert geometry.crop_image(img, (5, 5, 10, 10), InputSpec(height=8, width=8)).dtype == np.uint8


def test_outside_the_image_is_padded_with_pad_value():
    img = np.full((10, 10, 3), 255, np.uint8)
    crop = geometry.crop_image(img, (-20, -20, 5, 5), InputSpec(height=8, width=8))
    assert np.all(crop == geometry.PAD_VALUE)


def test_five_point_face_gets_the_crop_of_its_68_point_face():
    ref = geometry.reference_shape_68()
    a = geometry.similarity(17.0, 1.7, (0, 0), (120.0, 90.0))
    p68 = geometry.transform_points(ref, a)
    p5 = schemes.convert(p68, "300w_68", "mtfl_5")
    np.testing.assert_allclose(geometry.face_box(p5, "mtfl_5", "300w_68"), geometry.points_box(p68), atol=1e-2)
    np.testing.assert_allclose(geometry.face_box(p68, "300w_68", "mtfl_5"), geometry.points_box(p5), atol=1e-4)
    np.testing.assert_allclose(geometry.face_box(p68, "300w_68"), geometry.points_box(p68))


@pytest.mark.parametrize("box", [(0, 0, 0, 0), (0, 0, np.nan, 3), "abc", (1, 2, 3)])
def test_bad_box_is_named(box):
    with pytest.raises(ValueError, match="box"):
        geometry.preprocess(np.zeros((8, 8, 3), np.uint8), box, InputSpec(height=4, width=4))


def test_bad_image_is_named():
    with pytest.raises(ValueError, match="image_rgb_uint8"):
        geometry.preprocess(np.zeros((8, 8, 3), np.float32), (0, 0, 4, 4), InputSpec(height=4, width=4))
    with pytest.raises(ValueError, match="image_rgb_uint8"):
        geometry.preprocess(np.zeros((8, 8, 4), np.uint8), (0, 0, 4, 4), InputSpec(height=4, width=4))


def test_normalize_tensor_is_bitwise_normalize():
    img = np.random.default_rng(3).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    for spec in (InputSpec(mean=127.5, std=127.5), InputSpec(channels=1, mean=100.0, std=58.3)):
        ref = geometry.normalize(img, spec)
        got = geometry.normalize_tensor(geometry.model_channels(img, spec), spec).numpy()
        np.testing.assert_array_equal(got, ref)
