"""mobile_export.contract and the schema: the contract describes the exported file exactly, bad ones are refused."""
import copy
import json

import numpy as np
import pytest

from tests import export_helpers as H


@pytest.fixture(scope="module")
def exported():
    from mobile_export import contract, tflite
    from mobile_export.conformance import crops
    _, config, model = H.tiny()
    cal = crops(H.synthetic(4, config), config.input)[0]
    out = {}
    for mode in ("none", "int8"):
        data = tflite.convert(model, mode, lambda: iter(cal), "uint8")
        out[mode] = (data, contract.tflite_contract(config.input, data, {"name": "export_tiny", "file": "x.tflite"}))
    return config, out


def test_field_names_are_the_published_ones(exported):
    config, out = exported
    c = out["none"][1]
    assert c["format_version"] == "1.0"
    assert set(c["scheme"]) >= {"name", "num_points", "point_names"}
    assert c["scheme"]["name"] == "300w_68" and c["scheme"]["num_points"] == 68
    assert c["scheme"]["point_names"][36] == "left_eye_0"
    assert {"height", "width", "channels", "color", "dtype", "mean", "std"} <= set(c["input"])
    assert (c["input"]["height"], c["input"]["width"], c["input"]["channels"], c["input"]["color"]) == (32, 32, 3, "RGB")
    assert (c["input"]["mean"], c["input"]["std"]) == (127.5, 127.5)
    assert c["crop"] == {**c["crop"], "box": "landmarks_tight", "scale": 1.3, "shift_x": 0.0, "shift_y": 0.02,
                         "interpolation": "bilinear"}
    (land,) = c["outputs"]
    assert land["kind"] == "landmarks" and land["index"] == 0 and land["shape"] == [1, 68, 2]
    assert land["layout"] == "xy_normalized" and land["origin"] == "edge" and land["dtype"] == "float32"
    assert "scale" not in c["input"] and "scale" not in land


def test_quantized_input_parameters_come_from_the_model(exported):
    from ai_edge_litert.interpreter import Interpreter
    _, out = exported
    data, c = out["int8"]
    detail = Interpreter(model_content=data).get_input_details()[0]
    assert c["input"]["dtype"] == "uint8"
    assert c["input"]["scale"] == pytest.approx(float(detail["quantization"][0]))
    assert c["input"]["zero_point"] == int(detail["quantization"][1])
    # calibrated on (pixel - 127.5) / 127.5: the range is about [-1, 1]
    assert 1 / 255 <= c["input"]["scale"] <= 2.5 / 255


def test_contract_is_json_and_validates(exported):
    from tfalign.runtime import validate_contract
    _, out = exported
    for _, c in out.values():
        validate_contract(json.loads(json.dumps(c)))


@pytest.mark.parametrize("edit, where", [
    (lambda c: c["input"].pop("mean"), "mean"),
    (lambda c: c["input"].update(channels=1), "color"),
    (lambda c: c["input"].update(color="BGR"), "color"),
    (lambda c: c.update(format_version="2.0"), "format_version"),
    (lambda c: c["crop"].update(scale=0), "crop/scale"),
    (lambda c: c["outputs"][0].update(origin="corner"), "origin"),
    (lambda c: c["outputs"][0].update(shape=[1, 5, 2]), "shape"),
    (lambda c: c["scheme"]["point_names"].pop(), "point_names"),
    (lambda c: c["outputs"][0].update(kind="heatmaps"), "landmarks"),
    (lambda c: c["outputs"][0].update(dtype="int8"), "zero_point"),
])
def test_broken_contracts_are_refused_naming_the_field(exported, edit, where):
    from tfalign.runtime import validate_contract
    _, out = exported
    c = copy.deepcopy(out["none"][1])
    edit(c)
    with pytest.raises(ValueError, match=where):
        validate_contract(c, "my.contract.json")


def test_several_markups_are_joined_with_parts():
    from mobile_export.contract import scheme_block
    block = scheme_block(("300w_68", "mtfl_5"))
    assert block["name"] == "300w_68+mtfl_5" and block["num_points"] == 73
    assert block["parts"] == [{"name": "300w_68", "start": 0, "stop": 68}, {"name": "mtfl_5", "start": 68, "stop": 73}]
    assert block["point_names"][68] == "mtfl_5:left_eye"


def test_schema_file_is_versioned_json_schema():
    from tfalign.runtime import SCHEMA_PATH
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["properties"]["format_version"]["pattern"] == "^1\\.[0-9]+$"
    assert set(schema["required"]) == {"format_version", "scheme", "input", "crop", "outputs"}
