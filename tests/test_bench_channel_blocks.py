"""bench/channel_blocks.py: argument checks and one tiny run end to end (timings are not asserted)."""
import json

import pytest

from bench_helpers import load_bench

bench = load_bench("channel_blocks.py", "bench_channel_blocks")


@pytest.mark.parametrize("argv, message", [
    (["--shape", "3x3:8x8"], "--shape '3x3:8x8': expected KxK:HxWxC"),
    (["--shape", "3x1:8x8x4"], "kernel must be square"),
    (["--cout", "8:4:4"], "need 0 < LOW <= HIGH"),
    (["--rounds", "0"], "--rounds: must be > 0"),
])
def test_bad_arguments_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def test_defaults_cover_the_decafa_and_pointwise_shapes():
    args = bench.parse_args([])
    assert [s["name"] for s in args.shape] == bench.DEFAULT_SHAPES
    assert args.cout[0] == 4 and args.cout[-1] == 64


def test_tiny_run_writes_one_row_per_shape_and_channel_count(tmp_path):
    out = tmp_path / "blocks.json"
    assert bench.main(["--shape", "3x3:8x8x4", "--cout", "4:8:4", "--rounds", "1", "--runs", "1",
                       "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [(r["shape"], r["cout"]) for r in report["rows"]] == [("3x3:8x8x4", 4), ("3x3:8x8x4", 8)]
    assert report["rows"][1]["macs"] == 8 * 8 * 4 * 8 * 9
    for r in report["rows"]:
        assert r["float32_ms"] > 0 and r["int8_ms"] > 0
    assert report["cpu"]["cores"] >= 1 and report["kernels"] == "XNNPACK"
    assert report["x86_amx"] in ("available", "absent")  # not denied: this process has no filter


def test_help_offers_no_amx(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--help"])
    assert "--no-amx" in capsys.readouterr().out
