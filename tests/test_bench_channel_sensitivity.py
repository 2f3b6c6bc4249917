"""bench/channel_sensitivity.py: argument checks, the greedy suggestion, one tiny run end to end (timings are not
asserted)."""
import json
import os

import pytest

from bench_helpers import load_bench

bench = load_bench("channel_sensitivity.py", "bench_channel_sensitivity")


@pytest.mark.parametrize("argv, message", [
    (["--ratio", "1"], "--ratio: must be in (0, 1)"),
    (["--divisor", "0"], "--divisor: must be >= 1"),
    (["--target-macs", "1.5"], "--target-macs: must be in [0, 1)"),
    (["--model-dir", "nowhere"], "expected NAME=DIR with an existing DIR"),
    (["--model", "decafa", "--model-dir", "dense_unet=."], "names 'dense_unet', not --model 'decafa'"),
    (["--rank", "latency", "--rounds", "0"], "--rank latency: needs timing"),
])
def test_bad_arguments_name_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


def _row(layer, nme, macs, ms):
    return {"layer": layer, "nme": nme, "macs": macs, "latency_ms": ms}


def test_suggestion_buys_the_cheapest_milliseconds_first_until_both_targets():
    base = {"nme": 0.05, "macs": 1000, "latency_ms": 10.0}
    rows = [_row("stem", 0.051, 900, 9.9),   # MACs almost free, no time
            _row("deform", 0.10, 900, 8.0),  # time, expensive NME
            _row("d0", 0.06, 800, 8.5),      # time, cheaper NME per ms than deform
            _row("dead", 0.05, 1000, 10.0)]  # saves nothing: never taken
    s = bench.suggest(rows, base, "latency", 0.3, 0.2)
    # NME per ms saved: d0 0.0067, stem 0.01, deform 0.025; d0 + stem reach 30 % of the MACs but 16 % of the time
    assert s["layers"] == ["d0", "stem", "deform"] and s["reaches_targets"]
    assert s["estimated_macs_removed"] == pytest.approx(0.4) and s["estimated_latency_saved"] == pytest.approx(0.36)
    by_macs = bench.suggest(rows, base, "macs", 0.1, 0.0)
    assert by_macs["layers"] == ["stem"] and by_macs["reaches_targets"]
    assert not bench.suggest(rows, base, "macs", 0.9, 0.0)["reaches_targets"]


def test_tiny_run_measures_each_named_space_against_the_uncut_model(tmp_path, capsys):
    out = tmp_path / "sens.json"
    assert bench.main(["--model", "mobile_two_stage", "--val", "synthetic:4", "--only", "stem_conv,s2_reduce_conv",
                       "--rounds", "1", "--runs", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["layer"] for r in report["spaces"]] == ["stem_conv", "s2_reduce_conv"]
    base = report["uncut"]
    for r in report["spaces"]:
        assert r["kept"] < r["size"] and r["macs"] < base["macs"] and r["params"] < base["params"]
        assert r["nme"] > 0 and r["latency_ms"] > 0 and r["nme"] != base["nme"]
    assert report["val_faces"] == 4 and report["timing"] == "invoke"
    assert "suggested" in capsys.readouterr().out


def test_unknown_space_is_a_clear_error(capsys):
    assert bench.main(["--model", "mobile_two_stage", "--val", "synthetic:2", "--only", "heatmap1",
                       "--rounds", "0", "--out", os.devnull]) == 2
    assert "['heatmap1'] produce no prunable channel space" in capsys.readouterr().err
