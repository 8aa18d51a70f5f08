import json
import os
import stat
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402

from stylert.engine.artifacts import contract_from_onnx_metadata, contract_of, read_export  # noqa: E402
from stylert.engine.contract import METADATA_KEY, OPSET  # noqa: E402
from stylert.engine.errors import StyleRTError  # noqa: E402
from stylert.export.onnx_export import export_onnx  # noqa: E402

from ..conftest import TINY  # noqa: E402

# The op set the model is designed to export to (README: "ONNX ops"). A new op here is a
# design decision: it must run fast in ONNX Runtime (FP32 and INT8) and in TensorRT.
# Every convolution pads by replication (Pad, mode edge) before it.
# Encoder: the convolutions, then the style code's statistics (ReduceMean .. Sqrt, Concat).
# Decoder: the convolutions and upsampling, and the style head (Gemm, no biases) whose scales
# and shifts (Slice, Unsqueeze) modulate every convolution (Mul, Add).
EXPECTED_OPS = {"encoder": {"Pad", "Conv", "Relu", "Add", "ReduceMean", "Sub", "Pow", "Sqrt", "Unsqueeze", "Concat"},
                "decoder": {"Pad", "Conv", "Relu", "Add", "Resize", "Clip", "Gemm", "Mul", "Slice", "Unsqueeze"}}


def _export_variant(tmp_path, std: float, **cfg) -> dict:
    """A tiny model of another design (its style head random, std `std`) exported into
    tmp_path/out; returns its manifest."""
    import torch

    from stylert.export.checkpoint import save_model
    from stylert.export.model import VAE, VAEConfig

    torch.manual_seed(0)
    model = VAE(VAEConfig(**{**TINY, **cfg}))
    torch.nn.init.normal_(model.decoder.style.net[-1].weight, std=std)
    save_model(model, tmp_path / "ckpt")
    export_onnx(tmp_path / "out", checkpoint=tmp_path / "ckpt", log=lambda *a: None)
    return read_export(tmp_path / "out", check_hashes=True)


def test_files_manifest_and_ops(tiny_export):
    m = read_export(tiny_export, check_hashes=True)
    for role in ("encoder", "decoder"):
        model = onnx.load(str(tiny_export / m["files"][role]["path"]))
        onnx.checker.check_model(model, full_check=True)
        assert {n.op_type for n in model.graph.node} == EXPECTED_OPS[role]
        assert {a.s for n in model.graph.node if n.op_type == "Pad" for a in n.attribute if a.name == "mode"} == {b"edge"}
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        meta = {p.key: p.value for p in model.metadata_props}
        assert contract_from_onnx_metadata(meta).latent_channels == TINY["latent_channels"]
        assert meta["stylert.role"] == role
    assert (tiny_export / "checkpoint" / "model.safetensors").is_file()
    assert m["verification"]["passed"] and m["verification"]["max_abs"]["image"] <= 1e-4
    assert m["contract"]["opset"] == OPSET
    # written with normal permissions, not mkstemp's 0600
    assert stat.S_IMODE(os.stat(tiny_export / "manifest.json").st_mode) & 0o044


def test_dynamic_batch_and_size_in_ort(tiny_export):
    c = contract_of(tiny_export)
    enc = ort.InferenceSession(str(tiny_export / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(tiny_export / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in enc.get_inputs()] == [c.image.name]
    assert [o.name for o in enc.get_outputs()] == [c.latent.name, c.style.name]
    assert [i.name for i in dec.get_inputs()] == [c.latent.name, c.style.name]
    assert enc.get_inputs()[0].shape == ["N", 3, "H", "W"] and dec.get_inputs()[1].shape == ["N", c.style_size]
    for n, h, w in [(1, 8, 8), (5, 40, 96)]:
        z, s = enc.run(None, {"image": np.random.rand(n, 3, h, w).astype(np.float32)})
        assert z.shape == c.latent_shape(n, h, w) and s.shape == c.style_shape(n)
        y = dec.run(None, {"latent": z, "style": s})[0]
        assert y.shape == (n, 3, h, w) and y.min() >= 0 and y.max() <= 1
    meta = enc.get_modelmeta().custom_metadata_map
    assert json.loads(meta[METADATA_KEY])["latent_channels"] == TINY["latent_channels"]


def test_verification_failure_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch):
    import stylert.export.onnx_export as ex

    import dataclasses

    real = ex.contract_for
    monkeypatch.setattr(ex, "contract_for", lambda *a, **k: dataclasses.replace(real(*a, **k), export_tolerance=-1.0))  # any error fails
    out = tmp_path / "out"
    with pytest.raises(StyleRTError, match="disagree"):
        export_onnx(out, checkpoint=tiny_checkpoint, log=lambda *a: None)
    assert list(out.iterdir()) == [] and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_clear_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(StyleRTError, match="checkpoint folder does not exist"):
        export_onnx(tmp_path / "o", checkpoint=tmp_path / "missing", log=lambda *a: None)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StyleRTError, match="cannot write the output folder"):
        export_onnx(blocker / "sub", checkpoint=tiny_checkpoint, log=lambda *a: None)
    with pytest.raises(StyleRTError, match="not a StyleRT export"):
        read_export(tmp_path)


def test_tampered_onnx_detected(tiny_export, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_export, copy)
    with open(copy / "decoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(StyleRTError, match="changed since export"):
        read_export(copy, check_hashes=True)


def test_the_shuffle_head_exports_to_depth_to_space(tmp_path):
    """The PixelShuffle head adds one op, DepthToSpace: native in ONNX Runtime, OpenVINO and
    TensorRT; the export's own check holds it to PyTorch's output."""
    m = _export_variant(tmp_path, std=1.0, dec_head="shuffle")
    assert m["verification"]["passed"]
    dec = onnx.load(str(tmp_path / "out" / m["files"]["decoder"]["path"]))
    assert {n.op_type for n in dec.graph.node} == EXPECTED_OPS["decoder"] | {"DepthToSpace"}
    d2s = [n for n in dec.graph.node if n.op_type == "DepthToSpace"]
    assert len(d2s) == 1 and {a.name: a for a in d2s[0].attribute}["blocksize"].i == 2



@pytest.mark.parametrize("kw", [{"style_kernels": 3}, {"style_kernels": 2, "up_kernels": 2}], ids=["blocks", "blocks_and_up"])
def test_style_filters_export_to_the_same_ops_and_match_torch(tmp_path, kw):
    """The style-chosen filters (VAEConfig.style_kernels, up_kernels) are a grouped Conv, a Mul
    by the per-image mix and a grouped 1x1 Conv: no new op, a batch of different styles in one
    call, and the export's own check holds them to PyTorch's output."""
    m = _export_variant(tmp_path, std=0.3, **kw)
    assert m["verification"]["passed"]
    dec = onnx.load(str(tmp_path / "out" / m["files"]["decoder"]["path"]))
    assert {n.op_type for n in dec.graph.node} == EXPECTED_OPS["decoder"]
    groups = Counter(a.i for n in dec.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group" and a.i > 1)
    ups = (TINY["widths"][1], TINY["widths"][0]) if "up_kernels" in kw else ()
    assert groups == Counter([TINY["widths"][2]] * 2 * len(TINY["dec_dilations"]) + [c for c in ups for _ in (0, 1)])  # basis, sum
    # two images with two different styles in one batch: each as it would be alone
    sess = ort.InferenceSession(str(tmp_path / "out" / "decoder.onnx"), providers=["CPUExecutionProvider"])
    enc = ort.InferenceSession(str(tmp_path / "out" / "encoder.onnx"), providers=["CPUExecutionProvider"])
    z, s = enc.run(None, {"image": np.random.default_rng(0).random((2, 3, 32, 32), np.float32)})
    both = sess.run(None, {"latent": z, "style": s[::-1].copy()})[0]
    for i in range(2):
        alone = sess.run(None, {"latent": z[i : i + 1], "style": s[::-1][i : i + 1].copy()})[0]
        np.testing.assert_allclose(both[i : i + 1], alone, atol=1e-5)


def test_style_norm_exports_and_matches_torch(tmp_path):
    """The normalization blend (VAEConfig.style_norm) is reductions and arithmetic over the
    whole latent: the export's own check holds it to PyTorch's output, and a batch of two
    styles decodes each image as it would alone (the statistics are per image). Its contract
    says the decoder cannot run on tiles, and the engine refuses to, naming the way out."""
    from stylert.engine.runtime import Engine

    m = _export_variant(tmp_path, std=0.3, style_norm=True)
    assert m["verification"]["passed"] and m["contract"]["decoder_tiles"] is False
    eng = Engine.load(tmp_path / "out", backend="onnxruntime", tile=32, overlap=8)
    with pytest.raises(StyleRTError, match="(?s)cannot decode in tiles.*--max-side 32 or less.*--tile to 64"):
        eng.decode(np.zeros((1, TINY["latent_channels"], 16, 16), np.float32))
    assert eng.decode(np.zeros((1, TINY["latent_channels"], 8, 8), np.float32)).shape == (1, 3, 32, 32)
    sess = ort.InferenceSession(str(tmp_path / "out" / "decoder.onnx"), providers=["CPUExecutionProvider"])
    enc = ort.InferenceSession(str(tmp_path / "out" / "encoder.onnx"), providers=["CPUExecutionProvider"])
    z, s = enc.run(None, {"image": np.random.default_rng(0).random((2, 3, 32, 32), np.float32)})
    d = np.stack([s[1] - s[0], s[0] - s[1]]).astype(np.float32)
    both = sess.run(None, {"latent": z, "style": d})[0]
    for i in range(2):
        alone = sess.run(None, {"latent": z[i : i + 1], "style": d[i : i + 1]})[0]
        np.testing.assert_allclose(both[i : i + 1], alone, atol=1e-5)
