"""Dataset readers: every real file in ../shared/data, each format's conventions, bad input, and fuzzing."""
import json
import os

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfalign.data import readers as R
from tfalign.data.records import DataError, FaceRecord

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def _img(path, w=64, h=48):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))
    return str(path)


def _pts_text(points, n=None):
    n = len(points) if n is None else n
    return "version: 1\nn_points: %d\n{\n%s\n}\n" % (n, "\n".join(f"{x} {y}" for x, y in points))


def _write(path, text):
    path = str(path)
    with open(path, "wb") as fh:
        fh.write(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


FIVE = [(10.0, 10.0), (30.0, 10.0), (20.0, 20.0), (12.0, 30.0), (28.0, 30.0)]


# --- real data -------------------------------------------------------------------------------------------------

@pytest.mark.needs_data
def test_lfpw_has_805_faces_with_68_points(shared_data):
    recs = R.read_pts_dir(str(shared_data / "lfpw" / "trainset"))
    assert len(recs) == 805
    assert {r.scheme for r in recs} == {"300w_68"} and {r.num_points for r in recs} == {68}
    assert all(os.path.isfile(r.image_path) and r.image_path.endswith(".jpg") for r in recs)
    # 1-based on disk: the first point of image_0001.pts is "94.168 108.808".
    first = [r for r in recs if r.image_path.endswith("image_0001.jpg")][0]
    np.testing.assert_allclose(first.points[0], [93.168, 107.808], atol=1e-3)


@pytest.mark.needs_data
def test_mtfl_has_10000_faces_with_5_points(shared_data):
    recs = R.read_mtfl(str(shared_data / "mtfl" / "training.txt"))
    assert len(recs) == 10000
    assert {r.scheme for r in recs} == {"mtfl_5"}
    r = recs[0]
    assert r.image_path == str(shared_data / "mtfl" / "lfw_5590" / "Aaron_Eckhart_0001.jpg")
    np.testing.assert_allclose(r.points, [[85.7, 86.9], [118.1, 90.5], [100.9, 114.9], [84.9, 126.9],
                                          [112.5, 130.1]], atol=1e-4)
    assert r.attributes["gender"] == 1 and r.attributes["pose"] == 3
    assert {k for k in recs[-1].attributes} >= {"gender", "smile", "glasses", "pose", "image_size"}


MMPOSE = {"300w/test_300w.json": (2, 68), "300wlp/test_300wlp.json": (2, 68), "aflw/test_aflw.json": (2, 19),
          "coco/test_coco_wholebody.json": (4, 68), "cofw/test_cofw.json": (2, 29), "lapa/test_lapa.json": (2, 106),
          "wflw/test_wflw.json": (4, 98), "300vw/anno_300vw.json": (3, 68)}


@pytest.mark.needs_data
@pytest.mark.parametrize("name", sorted(MMPOSE))
def test_mmpose_fixtures_parse(shared_data, name):
    faces, n = MMPOSE[name]
    recs = R.read_coco(str(shared_data / "fixtures" / "mmpose_face_fixtures" / name))
    assert len(recs) == faces and {r.num_points for r in recs} == {n}
    assert all(os.path.isfile(r.image_path) for r in recs)
    if "300vw" not in name:
        assert all(r.box is not None and r.box[2] > 0 for r in recs)


@pytest.mark.needs_data
def test_other_fixtures_parse(shared_data):
    fx = shared_data / "fixtures"
    assert [r.num_points for r in R.read_pts_dir(str(fx / "menpo68"))] == [68, 68, 68]
    assert R.read_pts_dir(str(fx / "menpo68"))[2].image_path.endswith("takeo.ppm")
    assert len(R.read_pts_dir(str(fx / "mmpose_face_fixtures" / "300vw"))) == 4  # annot/*.pts + imgs/*.jpg
    (lenna,) = R.read_ljson(str(fx / "menpo68"))
    assert lenna.num_points == 68 and lenna.image_path.endswith("lenna.png")
    # LJSON stores (y, x): the first jaw point is [268.62069, 200.534483].
    np.testing.assert_allclose(lenna.points[0], [200.534483, 268.62069], atol=1e-4)
    xml = fx / "dlib_examples68_pseudo"
    assert len(R.read_dlib_xml(str(xml / "training_with_face_landmarks.xml"))) == 18
    assert len(R.read_dlib_xml(str(xml / "testing_with_face_landmarks.xml"))) == 25
    a68 = R.read_aflw2000(str(fx / "aflw2000_3d_16"))
    assert len(a68) == 16 and {r.num_points for r in a68} == {68}
    a19 = R.read_aflw2000(str(fx / "aflw2000_3d_16"), landmarks="pt2d")
    assert len(a19) == 16 and {r.scheme for r in a19} == {"aflw_19"}


@pytest.mark.needs_data
def test_aflw2000_pose(shared_data):
    import scipy.io

    path = shared_data / "fixtures" / "aflw2000_3d_16" / "image00050.mat"
    rec = R.read_aflw2000_mat(str(path))
    raw = scipy.io.loadmat(str(path))
    np.testing.assert_allclose(rec.attributes["pose_pyr"], raw["Pose_Para"][0, :3], rtol=1e-6)
    np.testing.assert_allclose(rec.attributes["pose_deg"], np.degrees(raw["Pose_Para"][0, :3]), rtol=1e-6)
    np.testing.assert_allclose(rec.points, raw["pt3d_68"][:2].T, rtol=1e-6)


# --- format conventions on tiny files --------------------------------------------------------------------------

def test_pts_is_one_based(tmp_path):
    _img(tmp_path / "a.jpg")
    rec = R.read_pts(_write(tmp_path / "a.pts", _pts_text([(x + 1, y + 1) for x, y in FIVE])))
    np.testing.assert_allclose(rec.points, FIVE)
    assert rec.scheme == "mtfl_5" and rec.image_path == str(tmp_path / "a.jpg")
    assert rec.attributes["image_size"] == (64, 48)


def test_wflw_line(tmp_path):
    _img(tmp_path / "img" / "1--x" / "a.jpg", 200, 200)
    pts = np.random.default_rng(0).uniform(20, 180, (98, 2))
    line = " ".join(f"{v:.3f}" for v in pts.reshape(-1)) + " 10 20 190 195 1 0 0 1 0 1 1--x/a.jpg"
    (rec,) = R.read_wflw(_write(tmp_path / "list.txt", line + "\n"), str(tmp_path / "img"))
    np.testing.assert_allclose(rec.points, pts, atol=1e-3)
    assert rec.box == (10.0, 20.0, 180.0, 175.0)
    assert rec.attributes["pose"] == 1 and rec.attributes["make_up"] == 1 and rec.attributes["blur"] == 1
    assert rec.scheme == "wflw_98"


def test_mtfl_backslash_paths_relative_to_list(tmp_path):
    _img(tmp_path / "lfw" / "a.jpg")
    xs, ys = zip(*FIVE)
    line = " lfw\\a.jpg " + " ".join(map(str, xs + ys)) + " 2 1 2 3\n"
    (rec,) = R.read_mtfl(_write(tmp_path / "training.txt", line))
    assert rec.image_path == str(tmp_path / "lfw" / "a.jpg")
    np.testing.assert_allclose(rec.points, FIVE)
    assert rec.attributes == {"gender": 2, "smile": 1, "glasses": 2, "pose": 3, "image_size": (64, 48)}


def test_celeba_with_bbox(tmp_path):
    _img(tmp_path / "img" / "000001.jpg")
    flat = " ".join(f"{x} {y}" for x, y in FIVE)
    lm = _write(tmp_path / "lm.txt", f"1\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
                                     f"leftmouth_y rightmouth_x rightmouth_y\n000001.jpg {flat}\n")
    bb = _write(tmp_path / "bb.txt", "1\nimage_id x_1 y_1 width height\n000001.jpg 5 6 30 32\n")
    (rec,) = R.read_celeba(lm, str(tmp_path / "img"), bb)
    np.testing.assert_allclose(rec.points, FIVE)
    assert rec.box == (5.0, 6.0, 30.0, 32.0)
    with pytest.raises(DataError, match="no row in the bbox file"):
        R.read_celeba(lm, str(tmp_path / "img"), _write(tmp_path / "bb2.txt", "0\nimage_id x_1 y_1 width height\n"))


def _cofw_arrays(n=2, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 255, (40 + 5 * i, 50), dtype=np.uint8) for i in range(n)]
    images[-1] = np.stack([images[-1]] * 3, axis=2)  # one RGB image among grey ones, as in COFW
    xy = rng.uniform(5, 35, (n, 2, 29))
    occ = rng.integers(0, 2, (n, 29)).astype(np.float64)
    phis = np.concatenate([xy[:, 0], xy[:, 1], occ], axis=1)
    boxes = np.array([[3.0, 4.0, 30.0, 31.0]] * n)
    return images, phis, boxes


def _check_cofw(recs, images, phis, boxes):
    assert len(recs) == len(images)
    for rec, img, phi, box in zip(recs, images, phis, boxes):
        np.testing.assert_allclose(rec.points, np.stack([phi[:29], phi[29:58]], 1) - 1, atol=1e-5)
        np.testing.assert_array_equal(rec.visibility, 1 - phi[58:])
        assert rec.box == (box[0] - 1, box[1] - 1, box[2], box[3])
        assert rec.image.shape == img.shape[:2] + (3,) and rec.image.dtype == np.uint8
        np.testing.assert_array_equal(rec.image[..., 0], img if img.ndim == 2 else img[..., 0])
        assert rec.scheme == "cofw_29"


def test_cofw_matlab_v5(tmp_path):
    import scipy.io

    images, phis, boxes = _cofw_arrays()
    cell = np.empty((len(images), 1), dtype=object)
    for i, im in enumerate(images):
        cell[i, 0] = im
    path = str(tmp_path / "COFW_train.mat")
    scipy.io.savemat(path, {"IsTr": cell, "phisTr": phis, "bboxesTr": boxes})
    _check_cofw(R.read_cofw(path), images, phis, boxes)


def _write_v73(path, images, phis, boxes, names=("IsT", "phisT", "bboxesT")):
    """The layout MATLAB's save -v7.3 writes: column-major arrays (transposed), cells as object references."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        ref_list = []
        for i, im in enumerate(images):
            d = refs.create_dataset(f"im{i}", data=np.ascontiguousarray(im.T))
            d.attrs["MATLAB_class"] = np.bytes_("uint8")
            ref_list.append(d.ref)
        cell = f.create_dataset(names[0], (1, len(images)), dtype=h5py.ref_dtype)
        cell[0, :] = ref_list
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        f.create_dataset(names[1], data=phis.T)
        f.create_dataset(names[2], data=boxes.T)
    with open(path, "r+b") as fh:  # MATLAB's text header in the user block
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sat Nov 21 00:00:00 2026 HDF5 schema 1.00 .")


def test_cofw_matlab_v73_hdf5(tmp_path):
    images, phis, boxes = _cofw_arrays(3, seed=1)
    path = str(tmp_path / "COFW_test.mat")
    _write_v73(path, images, phis, boxes)
    _check_cofw(R.read_cofw(path), images, phis, boxes)


def test_cofw_wrong_variables(tmp_path):
    import scipy.io

    path = str(tmp_path / "x.mat")
    scipy.io.savemat(path, {"something": np.zeros(3)})
    with pytest.raises(DataError, match="not a COFW file.*IsTr"):
        R.read_cofw(path)
    images, phis, boxes = _cofw_arrays()
    _write_v73(path, images, phis[:, :50], boxes, names=("IsTr", "phisTr", "bboxesTr"))
    with pytest.raises(DataError, match=r"phisTr has shape \(2, 50\)"):
        R.read_cofw(path)


def test_dlib_missing_parts_and_ignored_boxes(tmp_path):
    _img(tmp_path / "a.jpg", 100, 100)
    parts = "".join(f"<part name='{i}' x='{10 + i}' y='{20 + i % 7}'/>" for i in range(68) if i != 5)
    xml = (f"<?xml version='1.0'?><dataset><images><image file='a.jpg'>"
           f"<box top='1' left='2' width='80' height='90'>{parts}</box>"
           f"<box top='1' left='2' width='10' height='10' ignore='1'/>"
           f"<box top='1' left='2' width='10' height='10'/></image></images></dataset>")
    (rec,) = R.read_dlib_xml(_write(tmp_path / "f.xml", xml))
    assert rec.box == (2.0, 1.0, 80.0, 90.0) and rec.visibility[5] == 0 and rec.visibility.sum() == 67
    np.testing.assert_allclose(rec.points[6], [16, 26])


def test_coco_visibility_and_wholebody(tmp_path):
    _img(tmp_path / "a.jpg", 100, 100)
    kp = []
    for i, (x, y) in enumerate(FIVE):
        kp += [x, y, [2, 1, 2, 0, 2][i]]
    doc = {"images": [{"id": 7, "file_name": "a.jpg"}],
           "annotations": [{"image_id": 7, "keypoints": kp, "bbox": [1, 2, 3, 4], "id": 1},
                           {"image_id": 7, "keypoints": [0] * 51, "face_kpts": [0.0] * 204, "face_valid": False}]}
    (rec,) = R.read_coco(_write(tmp_path / "a.json", json.dumps(doc)))
    np.testing.assert_array_equal(rec.visibility, [1, 0, 1, 0, 1])
    np.testing.assert_allclose(rec.points[1], FIVE[1])  # labelled but occluded: kept where it was drawn
    np.testing.assert_allclose(rec.points[3], np.mean([FIVE[0], FIVE[1], FIVE[2], FIVE[4]], axis=0))
    assert rec.box == (1.0, 2.0, 3.0, 4.0)


# --- bad input -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,match,line", [
    ("version: 1\nn_points: 5\n{\n1 1\n2 2\n", r"truncated: 2 of 5 points", 5),
    ("version: 1\nn_points: 5\n", r"truncated: no '\{'", 2),
    (_pts_text(FIVE, n=6), r"5 points, but the header says n_points: 6", 9),
    (_pts_text(FIVE[:4]), r"4 points match no landmark scheme", None),
    (_pts_text(FIVE).replace("30.0 10.0", "nan 10"), r"NaN or infinite", 5),
    (_pts_text(FIVE).replace("30.0 10.0", "3O.0 10"), r"non-numeric value '3O.0'", 5),
    (_pts_text(FIVE).replace("30.0 10.0", "30 10 1"), r"expected 'x y'", 5),
    ("n_points: many\n{\n}\n", r"n_points is not an integer", 1),
    ("{\n1 2\n}\n", r"no 'n_points:' line", 1),
])
def test_bad_pts(tmp_path, text, match, line):
    _img(tmp_path / "a.png")
    path = _write(tmp_path / "a.pts", text)
    with pytest.raises(DataError, match=match) as e:
        R.read_pts(path)
    assert e.value.source == path and e.value.line == line
    assert str(e.value).startswith(path)


def test_non_utf8_names_the_line(tmp_path):
    _img(tmp_path / "a.png")
    path = _write(tmp_path / "a.pts", _pts_text(FIVE).encode().replace(b"20.0 20.0", b"20.0 \xff20"))
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 0xff") as e:
        R.read_pts(path)
    assert e.value.line == 6


def test_missing_image(tmp_path):
    path = _write(tmp_path / "a.pts", _pts_text(FIVE))
    with pytest.raises(DataError, match="no image beside it"):
        R.read_pts(path)
    xs, ys = zip(*FIVE)
    lst = _write(tmp_path / "t.txt", "gone\\a.jpg " + " ".join(map(str, xs + ys)) + " 1 1 1 1\n")
    with pytest.raises(DataError, match=r"image not found: .*gone/a.jpg") as e:
        R.read_mtfl(lst)
    assert e.value.source == f"{lst}:1"


def test_points_far_outside_the_image(tmp_path):
    _img(tmp_path / "a.png", 64, 48)
    inside = _write(tmp_path / "a.pts", _pts_text([(x, y + 20) for x, y in FIVE]))  # slightly outside: fine
    R.read_pts(inside)
    path = _write(tmp_path / "a.pts", _pts_text([(x * 10, y) for x, y in FIVE]))
    far = r"point 0 \(99.0, 9.0\) is far outside the 64x48 image .*a.png \(5 such points\)"
    with pytest.raises(DataError, match=far):
        R.read_pts(path)


def test_skip_bad_reports_every_bad_line(tmp_path):
    _img(tmp_path / "a.jpg")
    xs, ys = zip(*FIVE)
    good = "a.jpg " + " ".join(map(str, xs + ys)) + " 1 1 1 1"
    lines = [good, good.replace("10.0", "nan", 1), "a.jpg 1 2", good, good.replace("a.jpg", "b.jpg")]
    path = _write(tmp_path / "t.txt", "\n".join(lines) + "\n")
    bad = []
    recs = R.read_mtfl(path, on_error=bad.append)
    assert len(recs) == 2
    assert [(e.line if e.line else e.source.rsplit(":", 1)[1]) for e in bad] == [2, 3, "5"]
    with pytest.raises(DataError, match="NaN"):
        R.read_mtfl(path)


def test_bad_json_and_xml(tmp_path):
    with pytest.raises(DataError, match=r"invalid JSON") as e:
        R.read_coco(_write(tmp_path / "a.json", '{"images": [\n}'))
    assert e.value.line == 2
    with pytest.raises(DataError, match="not well-formed XML"):
        R.read_dlib_xml(_write(tmp_path / "a.xml", "<dataset><images>"))
    with pytest.raises(DataError, match="not a readable MATLAB"):
        R.read_cofw(_write(tmp_path / "a.mat", b"MATLAB 5.0 MAT-file" + b"\0" * 200))
    with pytest.raises(DataError, match="file not found"):
        R.read_wflw(str(tmp_path / "nope.txt"), str(tmp_path))


# --- fuzzing: malformed input ends in DataError, never in another exception ------------------------------------

PTS_LINES = st.sampled_from(["version: 1", "n_points: 5", "n_points: 68", "n_points: -1", "n_points: 1e9", "{",
                             "}", "1 2", "10 20", "nan 1", "1e400 2", "a b", "", "1 2 3", "  3.5   4.5 ", ":"])


def _only_data_errors(fn, *args, **kwargs):
    try:
        out = fn(*args, **kwargs)
    except DataError:
        return None
    return out


@FUZZ
@given(lines=st.lists(PTS_LINES | st.text(max_size=12), max_size=20), raw=st.binary(max_size=8))
def test_fuzz_pts(tmp_path, lines, raw):
    _img(tmp_path / "f.png", 64, 48)
    path = _write(tmp_path / "f.pts", "\n".join(lines).encode("utf-8", "surrogatepass") + raw)
    rec = _only_data_errors(R.read_pts, path)
    assert rec is None or (isinstance(rec, FaceRecord) and np.all(np.isfinite(rec.points)))


TOKENS = st.sampled_from(["1", "2.5", "-3", "nan", "inf", "x", "1e999", "a\\b.jpg", "0", "1", ""]) | st.text(max_size=6)


@FUZZ
@given(rows=st.lists(st.lists(TOKENS, min_size=0, max_size=20), max_size=5), raw=st.binary(max_size=6))
def test_fuzz_list_files(tmp_path, rows, raw):
    _img(tmp_path / "a.jpg")
    data = "\n".join(" ".join(r) for r in rows).encode("utf-8", "surrogatepass") + raw
    path = _write(tmp_path / "list.txt", data)
    for on_error in (None, []):
        report = on_error.append if on_error is not None else None
        _only_data_errors(R.read_mtfl, path, on_error=report)
        _only_data_errors(R.read_wflw, path, str(tmp_path), on_error=report)
        _only_data_errors(R.read_celeba, path, str(tmp_path), path, on_error=report)
        assert all(isinstance(e, DataError) for e in on_error or [])


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=20)
COCO_DOCS = st.fixed_dictionaries({
    "images": st.lists(st.fixed_dictionaries({"id": st.integers(0, 2) | st.text(max_size=2),
                                              "file_name": st.just("a.jpg") | JSON}), max_size=3) | JSON,
    "annotations": st.lists(st.dictionaries(
        st.sampled_from(["image_id", "keypoints", "bbox", "face_kpts", "face_valid", "face_box", "id"]),
        st.integers(0, 2) | st.lists(st.floats(-50, 500) | st.integers(0, 2) | JSON, max_size=20) | JSON,
        max_size=6), max_size=3) | JSON})
LJSON_POINTS = st.lists(st.lists(st.floats(-5, 70) | st.none() | JSON, max_size=3) | JSON, max_size=6)
LJSON_DOCS = (st.fixed_dictionaries({"landmarks": st.fixed_dictionaries({"points": LJSON_POINTS}) | JSON})
              | st.fixed_dictionaries({"version": st.just(3), "groups": st.dictionaries(st.text(max_size=3), st.one_of(
                  st.fixed_dictionaries({"landmarks": st.fixed_dictionaries({"points": LJSON_POINTS}) | JSON}),
                  JSON), max_size=3) | JSON}))


@FUZZ
@given(doc=COCO_DOCS | JSON, ljson=LJSON_DOCS | JSON)
def test_fuzz_json(tmp_path, doc, ljson):
    _img(tmp_path / "a.jpg")
    _only_data_errors(R.read_coco, _write(tmp_path / "c.json", json.dumps(doc)))
    _img(tmp_path / "l.png")
    _only_data_errors(R.read_ljson, _write(tmp_path / "l.ljson", json.dumps(ljson)))


XML_PARTS = st.sampled_from(["<dataset>", "</dataset>", "<images>", "</images>", "<image file='a.jpg'>",
                             "<image>", "</image>", "<box top='1' left='2' width='3' height='4'>",
                             "<box top='x'>", "</box>", "<part name='0' x='1' y='2'/>",
                             "<part name='4' x='1' y='2'/>", "<part name='a' x='1' y='2'/>",
                             "<part name='1' x='nan' y='2'/>", "<part name='67' x='5' y='5'/>", "<", "&amp;"])


@FUZZ
@given(parts=st.lists(XML_PARTS | st.text(max_size=5), max_size=25))
def test_fuzz_dlib_xml(tmp_path, parts):
    _img(tmp_path / "a.jpg")
    _only_data_errors(R.read_dlib_xml, _write(tmp_path / "d.xml", "".join(parts).encode("utf-8", "surrogatepass")))


@pytest.fixture(scope="module")
def valid_mats(tmp_path_factory):
    """Bytes of a valid COFW file as MATLAB v5 and as v7.3 (HDF5)."""
    import scipy.io

    images, phis, boxes = _cofw_arrays()
    cell = np.empty((2, 1), dtype=object)
    cell[0, 0], cell[1, 0] = images
    folder = tmp_path_factory.mktemp("mat")
    scipy.io.savemat(str(folder / "v5.mat"), {"IsTr": cell, "phisTr": phis, "bboxesTr": boxes})
    _write_v73(str(folder / "v73.mat"), images, phis, boxes)
    return [(folder / "v5.mat").read_bytes(), (folder / "v73.mat").read_bytes()]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 1), flips=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)),
                                                min_size=1, max_size=6), cut=st.none() | st.integers(0, 8000))
def test_fuzz_mat(tmp_path, valid_mats, which, flips, cut):
    data = bytearray(valid_mats[which])
    for pos, value in flips:
        data[pos % len(data)] = value
    path = _write(tmp_path / "c.mat", bytes(data[:cut] if cut is not None else data))
    _only_data_errors(R.read_cofw, path)
    _only_data_errors(R.read_aflw2000_mat, path, image_path=str(tmp_path / "x.jpg"))


@pytest.mark.needs_data
def test_aflw2000_pose_order_matches_the_faces(shared_data):
    """pose_pyr is (pitch, yaw, roll): yaw moves the nose across the face, roll tilts the eye line."""
    recs = R.read_aflw2000(str(shared_data / "fixtures" / "aflw2000_3d_16"))
    checked = 0
    for r in recs:
        p = r.points
        pitch, yaw, roll = r.attributes["pose_deg"]
        nose_shift = (p[30, 0] - (p[0, 0] + p[16, 0]) / 2) / (p[16, 0] - p[0, 0])
        eye_angle = np.degrees(np.arctan2(p[45, 1] - p[36, 1], p[45, 0] - p[36, 0]))
        if abs(yaw) > 10:
            assert np.sign(nose_shift) == -np.sign(yaw), (r.source, yaw, nose_shift)
            checked += 1
        if abs(yaw) < 20:
            assert abs(eye_angle - roll) < 8, (r.source, roll, eye_angle)
    assert checked >= 8


def test_a_mat_file_that_crashes_scipy_is_a_data_error():
    """tests/data/scipy_loadmat_segfault.mat: a synthetic COFW-layout .mat with a few bytes flipped, on which
    scipy.io.loadmat segfaulted here (found by test_fuzz_mat). Whether it crashes depends on what the parser
    reads past its buffer (on the CI machine it raised ValueError instead; on a Zen 3 host it once returned
    garbage that the COFW checks refused: "occlusion flags must be 0 or 1"), so the file only has to end as a
    DataError naming it, and the process has to survive; the crash path itself is forced below."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "scipy_loadmat_segfault.mat")
    with pytest.raises(DataError, match=r"scipy_loadmat_segfault\.mat"):
        R.read_cofw(path)
    with pytest.raises(DataError, match=r"scipy_loadmat_segfault\.mat"):
        R.read_aflw2000_mat(path, image_path=path + ".jpg")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the isolation needs fork; without it loadmat runs in-process")
def test_a_parser_that_dies_by_a_signal_is_a_data_error_naming_the_file(tmp_path, monkeypatch):
    """Deterministic form of the crash: the (forked) parser kills itself with SIGSEGV."""
    import signal

    import scipy.io

    monkeypatch.setattr(scipy.io, "loadmat", lambda *a, **k: os.kill(os.getpid(), signal.SIGSEGV))
    path = tmp_path / "crash.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(DataError, match=r"crash\.mat.*crashed on this file \(signal 11\)"):
        R._loadmat_isolated(str(path))
