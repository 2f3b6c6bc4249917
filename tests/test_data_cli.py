"""``python -m tfalign.data inspect``: counts, JSON output, montage, bad input (one line, exit 2), --skip-bad."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tfalign.data.__main__ import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIVE = [(20.0, 20.0), (44.0, 20.0), (32.0, 32.0), (22.0, 44.0), (42.0, 44.0)]


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "tfalign.data", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


def _dataset(tmp_path, bad_lines=()):
    os.makedirs(tmp_path / "img", exist_ok=True)
    xs, ys = zip(*FIVE)
    lines = []
    for i in range(6):
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), np.full((64, 64, 3), 40 * i, np.uint8))
        lines.append(f"img\\{i}.png " + " ".join(map(str, xs + ys)) + " 1 2 2 3")
    lines += list(bad_lines)
    path = tmp_path / "list.txt"
    path.write_text("\n".join(lines) + "\n")
    return f"mtfl:{path}"


def test_help_explains_every_flag():
    out = _cli("inspect", "--help")
    assert out.returncode == 0
    for flag in ("--json", "--montage", "--samples", "--tile", "--seed", "--skip-bad", "--no-image-check", "SPEC",
                 "300w:DIR", "#val"):
        assert flag in out.stdout, flag
    top = _cli("--help")
    assert top.returncode == 0 and "inspect" in top.stdout


def test_json_summary(tmp_path, capsys):
    assert main(["inspect", _dataset(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["faces"] == 6 and out["scheme"] == "mtfl_5" and out["num_points"] == 5 and out["skipped"] == 0
    assert out["images"] == 6 and out["schemes"] == {"mtfl_5": 6}


def test_table_output(tmp_path, capsys):
    assert main(["inspect", _dataset(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "faces            6" in out and "mtfl_5 (6)" in out


def test_bad_record_is_one_line_and_exit_2(tmp_path):
    spec = _dataset(tmp_path, bad_lines=["img\\0.png 1 2 nan 4 5 6 7 8 9 10 1 1 1 1"])
    out = _cli("inspect", spec)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("tfalign.data: error: ") and "list.txt:7" in lines[0] and "NaN" in lines[0]


def test_skip_bad_reports_every_record(tmp_path, capsys):
    spec = _dataset(tmp_path, bad_lines=["img\\0.png 1 2 3", "img\\gone.png " + " ".join(["9"] * 10) + " 1 1 1 1"])
    assert main(["inspect", spec, "--skip-bad", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["faces"] == 6 and out["skipped"] == 2
    assert [r["source"].rsplit(":", 1)[-1] if r["line"] is None else str(r["line"]) for r in out["skipped_records"]] \
        == ["7", "8"]
    assert "image not found" in out["skipped_records"][1]["reason"]
    assert main(["inspect", spec, "--skip-bad"]) == 0
    assert capsys.readouterr().out.count("  skipped ") == 2


def test_montage(tmp_path, capsys):
    png = tmp_path / "out" / "m.png"
    assert main(["inspect", _dataset(tmp_path), "--montage", str(png), "--samples", "4", "--tile", "64"]) == 0
    img = cv2.imread(str(png))
    assert img.shape == (128, 128, 3)
    # Every tile is a crop of a flat grey image: the only green pixels are the drawn points.
    green = (img[:, :, 1] > 200) & (img[:, :, 0] < 80) & (img[:, :, 2] < 80)
    assert green.sum() > 4 * 5
    ys, xs = np.nonzero(green[:64, :64])
    assert xs.min() < 20 and xs.max() > 44  # eyes and mouth corners spread across the crop
    assert not [f for f in os.listdir(png.parent) if f.endswith(".tmp")]


@pytest.mark.parametrize("args,match", [
    (["inspect", "nope:x"], "unknown dataset type"),
    (["inspect", "300w:/definitely/not/here"], "/definitely/not/here: not found"),
    (["inspect", "synthetic:2", "--montage", "m.jpg"], "--montage: expected a .png path"),
    (["inspect", "synthetic:2", "--samples", "0"], "--samples must be >= 1"),
])
def test_argument_errors(args, match, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_synthetic_with_split(capsys):
    assert main(["inspect", "synthetic:12#train", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 < out["faces"] <= 12 and out["scheme"] == "300w_68" and out["with_visibility"] == out["faces"]


@pytest.mark.needs_data
def test_real_data(shared_data):
    out = _cli("inspect", f"300w:{shared_data / 'lfpw' / 'trainset'}", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["faces"] == 805 and summary["num_points"] == 68 and summary["skipped"] == 0
    out = _cli("inspect", f"mtfl:{shared_data / 'mtfl' / 'training.txt'}", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["faces"] == 10000


@pytest.mark.parametrize("args", [["inspect"], [], ["inspect", "synthetic:2", "--samples", "x"], ["bogus"]])
def test_usage_errors_are_one_line(args):
    out = _cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfalign.data: error: "), out.stderr
