"""ONNX export of found networks, checked by loading the file back with onnx's checker."""
import pytest

import nasscale
from nasscale.cli import main

onnx = pytest.importorskip("onnx")


def test_export_named_and_yaml_networks(tmp_path, capsys):
    path = tmp_path / "net.yaml"
    path.write_text(nasscale.dump_network(nasscale.load("mobilenet_v3_small")))
    out = tmp_path / "m.onnx"
    assert main(["export", str(path), "--onnx", str(out), "--resolution", "96"]) == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 96, 96]
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 1000
    assert "checked with onnx.checker" in capsys.readouterr().out


def test_export_bad_input(tmp_path, capsys):
    assert main(["export", "nope_net", "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "unknown architecture 'nope_net'" in capsys.readouterr().err
