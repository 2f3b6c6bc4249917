"""Dataset spec strings, the fixed train/val split, and skip-bad reporting."""
import os

import cv2
import numpy as np
import pytest

from tfalign.data.records import DataError, FaceRecord
from tfalign.data.spec import load_records, parse_spec, split_records

FIVE = [(10.0, 10.0), (30.0, 10.0), (20.0, 20.0), (12.0, 30.0), (28.0, 30.0)]


def _img(path, w=64, h=48):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))


def _mtfl(tmp_path, names):
    xs, ys = zip(*FIVE)
    for n in names:
        _img(tmp_path / "img" / n)
    text = "".join(f"img\\{n} " + " ".join(map(str, xs + ys)) + " 1 1 1 1\n" for n in names)
    path = tmp_path / "list.txt"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("spec,match", [
    ("", "empty"), ("nope:x", "unknown dataset type 'nope'"), ("300w", "unknown dataset type"),
    ("wflw:only_one", r"expected wflw:ANNOTATIONS:IMAGES"), ("mtfl:a:b", "expected mtfl:LISTFILE"),
    ("300w:", "expected 300w:DIR"), ("300w:d#test", "unknown suffix #test"), ("300w:d#val=1.5", "fraction"),
    ("synthetic:x", "must be integers"), ("aflw2000:d:pt3d", "pt3d_68 or pt2d"),
])
def test_malformed_specs_name_the_spec(spec, match):
    with pytest.raises(ValueError, match=match) as e:
        load_records(spec)
    assert not isinstance(e.value, DataError)
    if spec:
        assert repr(spec) in str(e.value) or spec.split(":")[0] in str(e.value)


def test_parse_spec():
    assert parse_spec("wflw:a.txt:imgs#val") == ("wflw", ["a.txt", "imgs"], "val", 0.1)
    assert parse_spec("COCO:x.json#train=0.25") == ("coco", ["x.json"], "train", 0.25)
    assert parse_spec("synthetic:8") == ("synthetic", ["8"], None, 0.1)


def _rec(name, folder="a"):
    return FaceRecord(image_path=f"/{folder}/{name}", points=np.zeros((5, 2)), scheme="mtfl_5")


def test_split_is_deterministic_order_and_folder_independent():
    recs = [_rec(f"img_{i:05d}.jpg") for i in range(4000)]
    val = split_records(recs, "val")
    train = split_records(recs, "train")
    assert len(val) + len(train) == len(recs)
    assert not {r.image_path for r in val} & {r.image_path for r in train}
    assert 0.08 < len(val) / len(recs) < 0.12
    shuffled = [recs[i] for i in np.random.default_rng(1).permutation(len(recs))]
    assert {r.image_path for r in split_records(shuffled, "val")} == {r.image_path for r in val}
    moved = [_rec(os.path.basename(r.image_path), folder="elsewhere/deeper") for r in recs]
    assert [os.path.basename(r.image_path) for r in split_records(moved, "val")] == \
        [os.path.basename(r.image_path) for r in val]
    assert 0.45 < len(split_records(recs, "val", val_fraction=0.5)) / len(recs) < 0.55
    # Another seed gives another split; the default split never changes between versions (pinned here).
    assert {r.image_path for r in split_records(recs, "val", seed=1)} != {r.image_path for r in val}
    assert [os.path.basename(r.image_path) for r in val[:3]] == PINNED_FIRST_VAL


PINNED_FIRST_VAL = ["img_00010.jpg", "img_00012.jpg", "img_00014.jpg"]


def test_faces_of_one_image_share_a_split():
    recs = [_rec(f"img_{i}.jpg") for i in range(300) for _ in range(3)]
    val = split_records(recs, "val")
    assert len(val) % 3 == 0 and len(val) > 0


def test_split_arguments():
    with pytest.raises(ValueError, match="split must be"):
        split_records([], "test")
    with pytest.raises(ValueError, match="val_fraction"):
        split_records([], "val", val_fraction=1.0)


def test_spec_split_suffix(tmp_path):
    names = [f"f{i:03d}.jpg" for i in range(60)]
    path = _mtfl(tmp_path, names)
    every = load_records(f"mtfl:{path}")
    val = load_records(f"mtfl:{path}#val=0.3")
    train = load_records(f"mtfl:{path}#train=0.3")
    assert len(every) == 60 and len(val) + len(train) == 60 and 0 < len(val) < 40
    assert {r.image_path for r in val} == {r.image_path for r in split_records(every, "val", 0.3)}


def test_skip_bad_collects_every_bad_record(tmp_path):
    path = _mtfl(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    with open(path, "a") as fh:
        fh.write("img\\a.jpg 1 2 3\n")                                          # line 4: too few fields
        fh.write("img\\missing.jpg " + " ".join(["5"] * 10) + " 1 1 1 1\n")    # line 5: no image
        fh.write("img\\b.jpg " + " ".join(["900"] * 10) + " 1 1 1 1\n")        # line 6: far outside
    with pytest.raises(DataError, match=r"list.txt:4: expected 15 fields"):
        load_records(f"mtfl:{path}")
    report = []
    recs = load_records(f"mtfl:{path}", skip_bad=True, report=report)
    assert len(recs) == 3
    assert len(report) == 3 and all(isinstance(e, DataError) for e in report)
    text = [str(e) for e in report]
    assert text[0].endswith("expected 15 fields (path, x1..x5, y1..y5, gender, smile, glasses, pose), got 4")
    assert "list.txt:5" in text[1] and "image not found" in text[1]
    assert "list.txt:6" in text[2] and "far outside" in text[2]


def test_nothing_loaded_is_an_error(tmp_path):
    path = _mtfl(tmp_path, [])
    with pytest.raises(DataError, match="no faces loaded"):
        load_records(f"mtfl:{path}")


def test_synthetic_spec():
    recs = load_records("synthetic:3:mtfl_5:7")
    assert len(recs) == 3 and {r.scheme for r in recs} == {"mtfl_5"} and recs[0].image is not None
    again = load_records("synthetic:3:mtfl_5:7")
    np.testing.assert_array_equal(recs[2].points, again[2].points)
    with pytest.raises(ValueError, match="synthetic spec '3:nope'"):
        load_records("synthetic:3:nope")


def test_wflw_celeba_cofw_specs(tmp_path):
    import scipy.io

    _img(tmp_path / "im" / "a.jpg", 100, 100)
    pts = np.random.default_rng(0).uniform(10, 90, (98, 2))
    (tmp_path / "w.txt").write_text(" ".join(f"{v:.2f}" for v in pts.reshape(-1)) + " 1 2 3 4 0 0 0 0 0 0 a.jpg\n")
    assert load_records(f"wflw:{tmp_path / 'w.txt'}:{tmp_path / 'im'}")[0].num_points == 98
    flat = " ".join(f"{x} {y}" for x, y in FIVE)
    (tmp_path / "c.txt").write_text(f"1\nh h h h h h h h h h\na.jpg {flat}\n")
    (tmp_path / "b.txt").write_text("1\nimage_id x_1 y_1 width height\na.jpg 1 2 3 4\n")
    (rec,) = load_records(f"celeba:{tmp_path / 'c.txt'}:{tmp_path / 'im'}:{tmp_path / 'b.txt'}")
    assert rec.box == (1.0, 2.0, 3.0, 4.0)
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = np.zeros((40, 40), np.uint8)
    phis = np.concatenate([np.full(29, 5.0), np.full(29, 6.0), np.zeros(29)])[None]
    scipy.io.savemat(str(tmp_path / "cofw.mat"), {"IsT": cell, "phisT": phis, "bboxesT": np.ones((1, 4))})
    (rec,) = load_records(f"cofw:{tmp_path / 'cofw.mat'}")
    assert rec.scheme == "cofw_29" and rec.image.shape == (40, 40, 3)


@pytest.mark.needs_data
def test_real_specs(shared_data):
    d = shared_data
    fx = d / "fixtures"
    assert len(load_records(f"300w:{d / 'lfpw' / 'trainset'}")) == 805
    val = load_records(f"300w:{d / 'lfpw' / 'trainset'}#val")
    train = load_records(f"300w:{d / 'lfpw' / 'trainset'}#train")
    assert len(val) + len(train) == 805 and 50 < len(val) < 115
    mtfl = load_records(f"mtfl:{d / 'mtfl' / 'training.txt'}", check_images=False)
    assert len(mtfl) == 10000 and {r.num_points for r in mtfl} == {5}
    assert len(load_records(f"pts:{fx / 'menpo68' / 'takeo.pts'}")) == 1
    assert len(load_records(f"ljson:{fx / 'menpo68'}")) == 1
    assert len(load_records(f"aflw2000:{fx / 'aflw2000_3d_16'}")) == 16
    assert load_records(f"aflw2000:{fx / 'aflw2000_3d_16'}:pt2d")[0].scheme == "aflw_19"
    assert len(load_records(f"dlib:{fx / 'dlib_examples68_pseudo' / 'testing_with_face_landmarks.xml'}")) == 25
    m = fx / "mmpose_face_fixtures"
    assert load_records(f"coco:{m / 'lapa' / 'test_lapa.json'}")[0].num_points == 106
    assert len(load_records(f"coco:{m / '300vw' / 'anno_300vw.json'}:{m / '300vw'}")) == 3


def test_skip_bad_in_a_folder_of_pts(tmp_path):
    def pts(points, n=None):
        return "version: 1\nn_points: %d\n{\n%s\n}\n" % (n or len(points), "\n".join(f"{x} {y}" for x, y in points))

    for name in ("a", "b", "c", "d"):
        _img(tmp_path / "sub" / f"{name}.jpg")
    (tmp_path / "sub" / "a.pts").write_text(pts(FIVE))
    (tmp_path / "sub" / "b.pts").write_bytes(pts(FIVE).encode().replace(b"20.0", b"\xe920"))  # Latin-1 byte
    (tmp_path / "sub" / "c.pts").write_text(pts(FIVE, n=6))
    (tmp_path / "sub" / "d.pts").write_text("\n".join(pts(FIVE).splitlines()[:5]))  # cut after 2 points
    (tmp_path / "sub" / "e.pts").write_text(pts(FIVE))  # no image
    report = []
    recs = load_records(f"300w:{tmp_path}", skip_bad=True, report=report)
    assert [os.path.basename(r.image_path) for r in recs] == ["a.jpg"]
    why = {os.path.basename(e.source): e.reason for e in report}
    assert set(why) == {"b.pts", "c.pts", "d.pts", "e.pts"}
    assert "not UTF-8" in why["b.pts"] and "n_points: 6" in why["c.pts"] and "truncated" in why["d.pts"]
    assert "no image beside it" in why["e.pts"]
    with pytest.raises(DataError, match=r"b.pts:6: not UTF-8"):
        load_records(f"300w:{tmp_path}")
