"""INT8 mixed precision on the tiny model: the decoder's calibration inputs cover strength 1
with a held-out part, the sensitivity report's shape, and which nodes stay float."""

from __future__ import annotations

import numpy as np

from stylert.engine.artifacts import contract_of
from stylert.engine.build import precision as P
from stylert.engine.build.stage import decoder_calibration


def _calib(tiny_export, n=8, codes=None):
    c = contract_of(tiny_export)
    x = np.random.default_rng(0).random((n, 3, 64, 64), dtype=np.float32)
    enc = P.session(tiny_export / "encoder.onnx")
    return c, decoder_calibration(enc, x, c, codes)


def test_decoder_calibration_covers_strength_one_with_a_held_out_part(tiny_export):
    c, feeds = _calib(tiny_export)
    n = P.feeds_len(feeds)
    off = np.abs(feeds[c.style.name]).reshape(n, -1).max(1)
    assert n == 8 * 3  # each image: strength 0, two styles at strength 1
    assert (off == 0).sum() == 8 and (off > 0).sum() == 16
    assert 0 < feeds.holdout < n and feeds.holdout == 2 * 3  # the last quarter of the images


def test_sensitivity_report_shape_and_excluded_nodes(tiny_export, tmp_path):
    c, feeds = _calib(tiny_export)
    src = tiny_export / "decoder.onnx"
    never = P.latent_facing_convs(src, "decoder") + sorted(P.style_path_nodes(src, c.style.name))
    scales = P.activation_scales(src, feeds, "minmax")
    rep = P.select_int8_convs(src, feeds, scales, never, budget_db=0.0, method="minmax", log=lambda *a: None)
    convs = P.conv_nodes(src)
    assert {r["node"] for r in rep["rows"]} == set(convs) - set(never)  # the latent-facing conv is never a candidate
    assert set(rep["quantized"]) | set(rep["kept_in_float"]) == set(convs)
    assert not set(rep["quantized"]) & set(never)
    for r in rep["rows"]:
        assert {"alone_db", "alone_worst_db", "macs_share", "int8"} <= set(r)
        assert r["int8"] == (r["node"] in rep["quantized"])
    assert set(rep["onnxruntime_int8_kernels"]) <= set(rep["quantized"])
    assert P.format_sensitivity(rep)[0].startswith("per-layer INT8 sensitivity")


def test_shared_form_has_no_conv_output_qdq_and_ort_form_puts_them_back(tiny_export, tmp_path):
    c, feeds = _calib(tiny_export)
    src = tiny_export / "decoder.onnx"
    convs = P.conv_nodes(src)
    settings = P.quantize_int8(src, tmp_path / "d.onnx", feeds, "minmax", op_types=["Conv"],
                               exclude_nodes=convs[:1], conv_outputs=False)
    assert set(settings["ort_output_scales"]) and P.check_qdq_symmetric(tmp_path / "d.onnx") == []
    import onnx

    m = onnx.load(tmp_path / "d.onnx")
    prod = {o: n for n in m.graph.node for o in n.output}
    assert not any(n.op_type == "QuantizeLinear" and prod.get(n.input[0]) is not None
                   and prod[n.input[0]].op_type == "Conv" for n in m.graph.node)
    assert P.add_output_qdq(tmp_path / "d.onnx", tmp_path / "o.onnx", settings["ort_output_scales"])["output_qdq"] == \
        len(settings["ort_output_scales"])
    y0 = P.run_batched(P.session(tmp_path / "d.onnx", level="basic"), feeds, 4)[0]
    y1 = P.run_batched(P.session(tmp_path / "o.onnx", level="basic"), feeds, 4)[0]
    assert np.isfinite(y1).all() and np.abs(y1 - y0).max() < 0.25
