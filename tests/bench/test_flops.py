"""FLOP and byte counts from an ONNX graph, checked on models small enough to count by hand."""

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
import numpy as np  # noqa: E402

from stylert.bench.flops import count_export, count_onnx, measure_peak, peak_for  # noqa: E402


def _model(cin=3, cout=4, k=3, stride=1, group=1, bias=True):
    w = numpy_helper.from_array(np.zeros((cout, cin // group, k, k), np.float32), "w")
    inits = [w]
    ins = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(np.zeros((cout,), np.float32), "b"))
        ins.append("b")
    nodes = [
        helper.make_node("Conv", ins, ["y"], pads=[k // 2] * 4, strides=[stride, stride], group=group),
        helper.make_node("Relu", ["y"], ["out"]),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, "H", "W"])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", cout, None, None])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_conv_relu_counted_by_hand():
    w = count_onnx(_model(), 10, 12)
    out_el = 4 * 10 * 12
    assert w.conv_flops == 2 * out_el * 3 * 9 + out_el  # MACs x 2, plus the bias add
    assert w.flops == w.conv_flops + out_el  # Relu: one per output element
    assert w.weight_bytes == (4 * 3 * 9 + 4) * 4
    x_b, y_b = 3 * 10 * 12 * 4, out_el * 4
    assert w.activation_bytes == x_b + y_b + y_b + y_b  # conv reads x writes y; relu reads y writes out
    assert w.nodes == 2


def test_stride_and_groups():
    w = count_onnx(_model(cin=8, cout=8, stride=2, group=4, bias=False), 16, 16)
    out_el = 8 * 8 * 8
    assert w.conv_flops == 2 * out_el * (8 // 4) * 9


def test_export_counts_encoder_plus_decoder(tiny_export):
    from stylert.bench.flops import Work

    w = count_export(tiny_export, 32, 32)
    enc = count_onnx(tiny_export / "encoder.onnx", 32, 32)
    dec = count_onnx(tiny_export / "decoder.onnx", 4, 4)
    assert isinstance(w, Work) and w.flops == enc.flops + dec.flops > 0
    # The first encoder conv alone (3 -> 8 channels at 32x32) is a lower bound.
    assert enc.conv_flops > 2 * 8 * 32 * 32 * 3 * 9
    # Per image: doubling the side quadruples the work of a fully convolutional model.
    assert count_export(tiny_export, 64, 64).conv_flops == pytest.approx(4 * w.conv_flops)


def test_peak_is_positive():
    p = measure_peak(n=128, reps=1)
    assert p["peak_gflops"] > 0 and p["onnxruntime_gflops"] > 0


def test_a_row_is_judged_against_no_ceiling_below_fp32():
    # A CPU without native BF16: torch's emulated bf16 matmul measures ~1 GFLOP/s while
    # OpenVINO's BF16 row runs float32 kernels; its %peak was 15254 % against the bf16 figure.
    emulated = {"peak_gflops": 80.0, "bf16_peak_gflops": 0.5, "int8_peak_gops": 200.0}
    assert peak_for(emulated, "bf16") == 80.0
    assert peak_for(emulated, "int8") == 200.0
    assert peak_for(emulated, "fp16") == 80.0
    native = {"peak_gflops": 80.0, "bf16_peak_gflops": 800.0}
    assert peak_for(native, "bf16") == 800.0
    assert peak_for(native, "int8") == 80.0  # no int8 figure measured: the fp32 one
