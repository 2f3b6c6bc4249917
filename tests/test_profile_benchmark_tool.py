"""benchmark_model output parser on recorded text, and the adb runner against a fake adb."""
import json
import os
import pathlib
import stat
import sys

import pytest

from mobile_export.profile import benchmark_tool as bt
from mobile_export.profile import common

DATA = pathlib.Path(__file__).parent / "data" / "benchmark_outputs"


def parse(name):
    return bt.parse((DATA / name).read_text(encoding="utf-8"))


def test_rpi_xnnpack_run_extracts_exact_numbers():
    p = parse("rpi_xnnpack_int8.txt")
    assert p["delegate"] == "xnnpack" and p["threads"] == 4
    assert p["model"] == "yolo_best_recall_int8_static.tflite"
    assert p["init_ms"] == pytest.approx(18.777)
    assert p["first_ms"] == pytest.approx(64.791)
    assert p["warmup_avg_ms"] == pytest.approx(57.7582)
    assert p["inference_avg_ms"] == pytest.approx(55.0432)
    assert p["runs"] == {"count": 50, "first": 58.154, "curr": 53.809, "min": 53.077, "max": 60.727,
                         "avg": 55.0432, "std": 1.562}
    assert p["warmup"]["count"] == 9 and p["warmup"]["max"] == pytest.approx(65.831)
    assert p["model_size_mb"] == pytest.approx(3.67827)
    assert p["memory_mb"] == {"init": pytest.approx(8.97656), "overall": pytest.approx(18.7227)}


def test_gpu_run_is_recognised_as_fully_delegated():
    p = parse("android_gpu.txt")
    assert p["delegate"] == "gpu" and p["delegation"] == "complete"
    assert p["init_ms"] == pytest.approx(870.557)
    assert p["runs"]["avg"] == pytest.approx(119.375) and p["runs"]["count"] == 50


def test_logcat_prefixes_are_stripped_and_partial_nnapi_delegation_read():
    p = parse("logcat_nnapi.txt")
    assert p["delegate"] == "nnapi" and p["delegation"] == "partial" and p["delegate_kernels"] == 44
    assert p["inference_avg_ms"] == pytest.approx(12.1676)
    assert p["runs"]["count"] == 75 and p["runs"]["std"] == pytest.approx(0.325)
    init = p["tables"]["init_run_order"]
    assert [r["node_type"] for r in init] == ["ModifyGraphWithDelegate", "AllocateTensors"]
    assert init[0]["avg_ms"] == pytest.approx(54.571) and init[0]["mem_kb"] == pytest.approx(1132.0)
    assert init[1]["times_called"] == 2 and init[1]["name"] == "AllocateTensors/0"


def test_old_op_profiling_table_and_summary():
    p = parse("readme_op_profiling.txt")
    rows = p["tables"]["regular_run_order"]
    assert rows[0] == {"node_type": "CONV_2D", "start": 0.0, "first": 4.269, "avg_ms": 4.269, "pct": 0.107,
                       "cdf_pct": 0.107, "mem_kb": 0.0, "times_called": 0.0,
                       "name": "MobilenetV1/MobilenetV1/Conv2d_0/Relu6"}
    summary = p["tables"]["regular_summary"]
    assert [r["node_type"] for r in summary][:2] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    assert summary[0]["count"] == 15 and summary[0]["avg_pct"] == pytest.approx(89.27)
    assert p["nodes_executed"] == 31
    assert p["runs"]["count"] == 50 and p["runs"]["avg"] == pytest.approx(79.732)
    assert p["init_ms"] == pytest.approx(38.467) and p["inference_avg_ms"] == pytest.approx(79.7609)


def test_old_logcat_summary_line():
    p = parse("logcat_old_summary.txt")
    assert p["warmup_avg_ms"] == pytest.approx(91.471)
    assert p["init_ms"] == pytest.approx(4.108)
    assert p["inference_avg_ms"] == pytest.approx(80.6601)


def test_scientific_notation():
    p = parse("scientific_notation.txt")
    assert p["runs"]["avg"] == pytest.approx(2950.34)
    assert p["warmup_avg_ms"] == pytest.approx(3512.39)
    assert p["init_ms"] == pytest.approx(120.0)


def test_percentiles_and_all_same_form_give_p50_from_median():
    p = parse("constructed_percentiles.txt")
    assert p["warmup"] == {"count": 1, "curr": 1.52, "all_same": True}
    assert p["runs"]["median"] == pytest.approx(0.501) and p["runs"]["p95"] == pytest.approx(0.54)
    assert p["runs"]["max"] == pytest.approx(1.032)
    r = bt.to_result(p)
    assert r["p50_ms"] == pytest.approx(0.501) and r["p90_ms"] is None and r["p95_ms"] == pytest.approx(0.54)
    old = bt.to_result(parse("rpi_xnnpack_int8.txt"))
    assert old["p50_ms"] == pytest.approx(55.0432) and "mean" in old["note"]


def test_xnnpack_style_node_types_with_spaces():
    text = ("Operator-wise Profiling Info for Regular Benchmark Runs:\n"
            "============================== Run Order ==============================\n"
            "\t [node type]\t [first]\t [avg ms]\t [%]\t [cdf%]\t [mem KB]\t[times called]\t[Name]\n"
            "\t Convolution (NHWC, QC8) IGEMM\t 0.512\t 0.498\t 40.1%\t 40.1%\t 0.000\t 1\t Delegate/Convolution"
            " (NHWC, QC8) IGEMM:0\n"
            "count=10 first=1000 curr=990 min=980 max=1100 avg=1000 std=5\n")
    p = bt.parse(text)
    [row] = p["tables"]["regular_run_order"]
    assert row["node_type"] == "Convolution (NHWC, QC8) IGEMM"
    assert row["avg_ms"] == pytest.approx(0.498) and row["name"] == "Delegate/Convolution (NHWC, QC8) IGEMM:0"


def test_text_without_timings_is_an_error():
    with pytest.raises(ValueError, match="no benchmark timings"):
        bt.parse("ERROR: Could not open 'x.tflite'.\nFailed to load model\n")


FAKE_ADB = r'''#!{python}
import os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as fh:
    fh.write(" ".join(args) + "\n")
if args[:2] == ["-s", "SERIAL1"]:
    args = args[2:]
if os.environ.get("FAKE_ADB_FAIL") and args[0] == "push":
    sys.stderr.write("adb: error: no devices/emulators found\n"); sys.exit(1)
if args[:2] == ["shell", "getprop"]:
    print({{"ro.product.model": "Pixel 7", "ro.product.manufacturer": "Google", "ro.soc.model": "GS201",
           "ro.build.version.release": "14", "ro.build.version.sdk": "34",
           "ro.product.cpu.abi": "arm64-v8a"}}.get(args[2], ""))
elif args[0] == "shell" and args[1].endswith("benchmark_model"):
    sys.stdout.write(open(os.environ["FAKE_ADB_OUTPUT"]).read())
'''


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    adb = bindir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "constructed_percentiles.txt"))
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF")
    return {"log": log, "model": model, "binary": binary}


def test_adb_runner_pushes_runs_parses_and_writes_schema_json(fake_adb):
    doc = bt.run_adb(fake_adb["model"], fake_adb["binary"], delegates=("xnnpack", "gpu"), threads=(1, 4),
                     warmup_runs=2, runs=7, adb=bt.find_adb(), serial="SERIAL1")
    common.validate_benchmark(doc)
    assert doc["device"] == {"model": "Pixel 7", "manufacturer": "Google", "soc": "GS201",
                             "os": "Android 14 (API 34)", "abi": "arm64-v8a"}
    assert doc["model"]["sha256"] == common.sha256_file(fake_adb["model"])
    assert [(r["threads"], r["p50_ms"]) for r in doc["results"]] == [(1, 0.501), (4, 0.501), (1, 0.501),
                                                                     (4, 0.501)]
    log = fake_adb["log"].read_text().splitlines()
    assert all(line.startswith("-s SERIAL1 ") for line in log)
    assert any(line.startswith("-s SERIAL1 push") and line.endswith("/data/local/tmp/tfalign/m.tflite")
               for line in log)
    runs = [line for line in log if "benchmark_model --graph" in line]
    assert len(runs) == 4
    assert "--num_threads=4" in runs[1] and "--use_gpu=true" in runs[2] and "--num_runs=7" in runs[0]
    # The tool's output said XNNPACK, so even the "gpu" request is recorded as what really ran.
    assert {r["delegate"] for r in doc["results"]} == {"xnnpack"}


def test_adb_failure_is_one_clear_error(fake_adb, monkeypatch):
    monkeypatch.setenv("FAKE_ADB_FAIL", "1")
    with pytest.raises(bt.AdbError, match="no devices/emulators found"):
        bt.run_adb(fake_adb["model"], fake_adb["binary"], adb=bt.find_adb())


def test_adb_cli_writes_json(fake_adb, tmp_path, capsys):
    from tfalign import profile
    rc = profile.main([str(fake_adb["model"]), "--adb", "--benchmark-binary", str(fake_adb["binary"]),
                       "--threads", "2", "--runs", "5", "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "Pixel 7" in out and "0.501" in out
    saved = json.loads((tmp_path / "o" / "m.adb.json").read_text())
    assert saved["results"][0]["threads"] == 2


def test_adb_without_binary_is_exit_2(fake_adb, capsys):
    from tfalign import profile
    assert profile.main([str(fake_adb["model"]), "--adb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--benchmark-binary" in err[0]
