"""FP16 conversion and INT8 quantization on the tiny exported model (no TensorRT needed)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, numpy_helper  # noqa: E402

from stylert.engine.build import precision as P  # noqa: E402
from stylert.engine.compare import compare  # noqa: E402
from stylert.engine.errors import StyleRTError  # noqa: E402

from ..conftest import TINY  # noqa: E402


@pytest.fixture(scope="module")
def images():
    # Smooth random images in [0, 1]: what the encoder sees, cheap to make.
    rng = np.random.default_rng(0)
    x = rng.random((6, 3, 8, 8), dtype=np.float32)
    return np.stack([np.kron(im, np.ones((1, 8, 8), np.float32)) for im in x])  # (6, 3, 64, 64)


@pytest.fixture(scope="module")
def feeds(images):
    return {"image": images}


def _io_types(path):
    m = onnx.load(str(path))
    return [i.type.tensor_type.elem_type for i in list(m.graph.input) + list(m.graph.output)]


def test_fp16_keeps_float32_io_and_matches_fp32(tiny_export, feeds, tmp_path):
    src, dst = tiny_export / "encoder.onnx", tmp_path / "enc16.onnx"
    info = P.convert_fp16(src, dst, feeds, log=lambda *a: None, float_outputs=["style"])
    stats = {n.name for n in onnx.load(str(src)).graph.node if n.op_type in ("ReduceMean", "Pow", "Sqrt", "Concat")}
    assert stats and stats <= set(info["fp32_nodes"])  # the statistics stay float32
    # convolutions run in float16, but for the style branch's, which feed the code alone
    kept_convs = [n for n in info["fp32_nodes"] if n.startswith("node_conv") or "Conv" in n]
    assert len(kept_convs) <= len(TINY["style_widths"])
    assert _io_types(dst) == [TensorProto.FLOAT] * 3  # image in; latent and style code out
    m = onnx.load(str(dst))
    assert any(t.data_type == TensorProto.FLOAT16 for t in m.graph.initializer)
    ref = P.run_batched(P.session(src), feeds)
    got = P.run_batched(P.session(dst), feeds)
    assert all(g.dtype == np.float32 for g in got)
    assert compare(got[0], ref[0], peak=None).psnr_db > 50


def test_fp16_decoder_runs_with_resize(tiny_export, feeds, tmp_path):
    z, s = P.run_batched(P.session(tiny_export / "encoder.onnx"), feeds)
    dec_feeds = {"latent": z, "style": s}
    dst = tmp_path / "dec16.onnx"
    P.convert_fp16(tiny_export / "decoder.onnx", dst, dec_feeds, log=lambda *a: None)
    ref = P.run_batched(P.session(tiny_export / "decoder.onnx"), dec_feeds)[0]
    got = P.run_batched(P.session(dst), dec_feeds)[0]
    assert compare(got, ref).psnr_db > 50


def test_fp16_keeps_large_activations_in_float32(tiny_export, feeds, tmp_path, monkeypatch):
    # With a limit below every activation, every node must stay float32.
    monkeypatch.setattr(P, "FP16_HEADROOM", 1e-12)
    n_nodes = len(onnx.load(str(tiny_export / "encoder.onnx")).graph.node)
    info = P.convert_fp16(tiny_export / "encoder.onnx", tmp_path / "e.onnx", feeds, log=lambda *a: None, float_outputs=["style"])
    assert len(info["fp32_nodes"]) == n_nodes


def _zero_points(path):
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            yield n, inits[n.input[2]]


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_int8_is_symmetric_qdq(tiny_export, feeds, tmp_path, method):
    dst = tmp_path / f"enc8_{method}.onnx"
    settings = P.quantize_int8(tiny_export / "encoder.onnx", dst, feeds, method=method)
    assert settings["calibration_method"] == method
    zps = list(_zero_points(dst))
    ops = P.count_qdq(dst)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]  # + weights
    for node, zp in zps:  # every zero-point int8 and 0: what TensorRT's parser accepts
        assert zp.data_type == TensorProto.INT8, node.name
        assert not np.any(numpy_helper.to_array(zp)), node.name
    # biases stay float (TensorRT rejects an int32 DequantizeLinear)
    assert all(numpy_helper.to_array(zp).dtype != np.int32 for _, zp in zps)
    assert P.check_qdq_symmetric(dst) == []
    ref = P.run_batched(P.session(tiny_export / "encoder.onnx"), feeds)[0]
    got = P.run_batched(P.session(dst), feeds)[0]
    assert compare(got, ref, peak=None).psnr_db > 25


def test_check_qdq_symmetric_flags_uint8(tiny_export, feeds, tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    dst = tmp_path / "u8.onnx"
    quantize_static(str(tiny_export / "encoder.onnx"), str(dst), P.ArrayReader(feeds),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    problems = P.check_qdq_symmetric(dst)
    assert problems and any("UINT8" in p or "INT32" in p for p in problems)


def test_unknown_calibration_method(tiny_export, feeds, tmp_path):
    with pytest.raises(StyleRTError, match="calibration method"):
        P.quantize_int8(tiny_export / "encoder.onnx", tmp_path / "x.onnx", feeds, method="kl")


def test_cpu_form_folds_relu_and_matches(tiny_export, feeds, tmp_path):
    sym, cpu = tmp_path / "sym.onnx", tmp_path / "cpu.onnx"
    P.quantize_int8(tiny_export / "encoder.onnx", sym, feeds)
    n_relu = P.count_qdq(sym)["Relu"]
    folded = P.fold_relu_uint8(sym, cpu)["relus_folded"]
    assert folded == n_relu and "Relu" not in P.count_qdq(cpu)
    a = P.run_batched(P.session(sym), feeds)[0]
    b = P.run_batched(P.session(cpu), feeds)[0]
    ref = P.run_batched(P.session(tiny_export / "encoder.onnx"), feeds)[0]
    # The CPU form skips one rounding and one clip: at least as close to FP32.
    assert compare(b, ref, peak=None).psnr_db >= compare(a, ref, peak=None).psnr_db - 0.5


def test_load_batch_crops_to_square(tmp_path):
    from PIL import Image

    Image.new("RGB", (120, 80), (255, 0, 0)).save(tmp_path / "a.png")
    x = P.load_batch([tmp_path / "a.png"], size=64)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    assert np.allclose(x[0, 0], 1.0) and np.allclose(x[0, 1:], 0.0)
