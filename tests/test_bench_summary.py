"""bench/summary.py: the README's model table is generated from bench/results, and says where a row came from."""
import os

from bench_helpers import load_bench

summary = load_bench("summary.py", "bench_summary")


def _variant(nme, kb, ms, **extra):
    return {"nme": nme, "params": 286732, "macs": 927.3e6, "size_bytes": kb * 1024, "latency_ms": ms, **extra}


def test_a_shipped_research_model_gets_its_float32_and_int8_compression_rows(monkeypatch):
    comp = {"models": {"dense_unet_w64": {"variants": {"float32": _variant(0.0424, 1493, 40.0),
                                                         "ptq_int8": _variant(0.0447, 613, 25.0)}}}}
    monkeypatch.setattr(summary, "_load", lambda name: comp if name == "compression" else None)
    rows = {r[0]: r for r in summary.rows()}
    assert rows["dense_unet_w64"] == ["dense_unet_w64", "286,732", "927", "4.24", "4.47", "1493", "613", "40.00",
                                      "25.00", summary.SHIPPED_RESEARCH["dense_unet_w64"], "bench/compression.py"]
    comp["models"]["dense_unet_w64"]["variants"].pop("ptq_int8")
    assert [r[4] for r in summary.rows() if r[0] == "dense_unet_w64"] == ["–"]
    comp["models"].clear()  # not benched: no row rather than a row of dashes
    assert not [r for r in summary.rows() if r[0] == "dense_unet_w64"]


def test_the_readme_table_is_the_generated_one():
    with open(os.path.join(summary.ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    block = readme.split(summary.START, 1)[1].split(summary.END, 1)[0].strip()
    assert block == summary.table(), "README models table is stale: run python bench/summary.py --write-readme"
