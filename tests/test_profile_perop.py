"""Per-op profiler: single-op sub-models are faithful, cover every op, and costs follow the shapes."""
import numpy as np
import pytest
from profile_helpers import tiny_models  # noqa: F401  (fixture)

from mobile_export.profile import common, perop


def _model(path):
    return perop.read_model(path.read_bytes())


def test_rows_cover_every_op_of_the_graph(tiny_models):
    for kind in ("float", "int8", "fp16"):
        interp = common.make_interpreter(tiny_models[kind], xnnpack=False)
        interp.allocate_tensors()
        expected = [o["op_name"] for o in interp._get_ops_details()]
        rows = perop.graph_ops(_model(tiny_models[kind]))
        assert [r["op"] for r in rows] == expected
        assert [r["index"] for r in rows] == list(range(len(expected)))


def test_macs_and_bytes_follow_the_layer_shapes(tiny_models):
    rows = {r["op"] + str(i): r for i, r in enumerate(perop.graph_ops(_model(tiny_models["float"])))}
    conv, dw, pw = rows["CONV_2D0"], rows["DEPTHWISE_CONV_2D1"], rows["CONV_2D2"]
    # 16x16x3 -> stride 2 3x3 conv to 8x8x8; depthwise 3x3 on 8 channels; 1x1 conv 8 -> 16; dense 16 -> 10.
    assert conv["macs"] == 8 * 8 * 8 * 3 * 3 * 3 and conv["kind"] == "dense"
    assert dw["macs"] == 8 * 8 * 8 * 3 * 3 and dw["kind"] == "depthwise"
    assert pw["macs"] == 8 * 8 * 16 * 8
    assert rows["FULLY_CONNECTED4"]["macs"] == 16 * 10
    assert rows["MEAN3"]["macs"] == 0 and rows["MEAN3"]["kind"] == "other"
    assert conv["bytes_in"] == 16 * 16 * 3 * 4 and conv["bytes_out"] == 8 * 8 * 8 * 4
    assert conv["bytes_weights"] == (8 * 3 * 3 * 3 + 8) * 4
    int8 = perop.graph_ops(_model(tiny_models["int8"]))
    assert int8[0]["macs"] == conv["macs"] and int8[0]["bytes_out"] == 8 * 8 * 8  # 1-byte activations


def test_single_op_model_computes_what_the_op_computes_in_the_graph(tiny_models):
    """Run the whole model keeping every tensor, then each op alone on the same inputs: outputs must match."""
    for kind in ("float", "int8", "fp16"):
        path = tiny_models[kind]
        model = _model(path)
        values = perop._tensor_values(path, None, 1)
        for row in perop.graph_ops(model):
            if row["kind"] == "folded":
                continue
            content, in_ids, out_ids = perop.single_op_model(model, row["index"])
            interp = common.make_interpreter(model_content=content, xnnpack=False)
            interp.allocate_tensors()
            for det, tid in zip(interp.get_input_details(), in_ids):
                interp.set_tensor(det["index"], values[tid])
            interp.invoke()
            got = interp.get_tensor(interp.get_output_details()[0]["index"])
            np.testing.assert_allclose(got.astype(np.float64), values[out_ids[0]].astype(np.float64),
                                       rtol=1e-5, atol=1e-5, err_msg=f"{kind} op {row['index']} {row['op']}")


def test_fp16_weight_unpacking_is_folded_into_its_consumer(tiny_models):
    model = _model(tiny_models["fp16"])
    rows = perop.graph_ops(model)
    folded = [r for r in rows if r["kind"] == "folded"]
    assert folded and all(r["op"] == "DEQUANTIZE" for r in folded)
    conv = next(r for r in rows if r["op"] == "CONV_2D")
    content, in_ids, _ = perop.single_op_model(model, conv["index"])
    sub = perop.read_model(content)
    names = [perop.op_name(sub, o) for o in sub.subgraphs[0].operators]
    assert names[-1] == "CONV_2D" and set(names[:-1]) == {"DEQUANTIZE"} and len(names) >= 2  # weights (+ bias)
    assert len(in_ids) == 1  # only the activation; the weights stay constants
    # Costs count the unpacked weights as weights, not as activations read per inference.
    float_conv = perop.graph_ops(_model(tiny_models["float"]))[0]
    assert conv["bytes_weights"] == pytest.approx(float_conv["bytes_weights"])
    assert conv["bytes_in"] == float_conv["bytes_in"]


@pytest.mark.parametrize("xnnpack", [True, False])
def test_profile_reports_times_and_the_sum_to_whole_ratio(tiny_models, xnnpack):
    res = perop.profile(tiny_models["int8"], xnnpack=xnnpack, runs=5, warmup=1, progress=False)
    assert res["num_ops"] == len(res["ops"]) == res["num_timed"]
    assert all(r["time_ms"] > 0 and "error" not in r for r in res["ops"])
    assert res["op_sum_ms"] == pytest.approx(sum(r["time_ms"] for r in res["ops"]))
    assert res["ratio_sum_to_whole"] == pytest.approx(res["op_sum_ms"] / res["whole_model_p50_ms"])
    assert res["invoke_overhead_ms"] > 0
    assert sum(r["share"] for r in res["ops"]) == pytest.approx(1.0)
    assert res["total_macs"] == sum(r["macs"] for r in res["ops"])
    text = perop.table(res)
    assert "ratio" in text and "vs whole model" in text


def test_top_ops_chart(tiny_models, tmp_path):
    res = perop.profile(tiny_models["float"], runs=3, warmup=0, progress=False)
    assert open(perop.chart(res, tmp_path / "ops.png"), "rb").read(4) == b"\x89PNG"
    assert sum(t["count"] for t in perop.by_type(res)) == res["num_ops"]


def test_cli_per_op_uses_the_host_whole_model_time(tiny_models, capsys):
    import json

    from tfalign import profile as cli
    assert cli.main([str(tiny_models["float"]), "--per-op", "--threads", "1", "--xnnpack", "on", "--runs", "5",
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["per_op"]["whole_model_p50_ms"] == doc["host"]["results"][0]["p50_ms"]
    assert len(doc["per_op"]["ops"]) == doc["per_op"]["num_ops"] == 5
