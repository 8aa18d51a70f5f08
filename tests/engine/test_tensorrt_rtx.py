"""Real TensorRT-RTX plans built on this CPU-only machine (ahead-of-time), and what a CPU can
check about them: they exist, the manifest records the flavour, version, targets and build
figures, bad models and impossible profiles are clear errors, and a machine that cannot run
them says so and names what can. Running a plan needs a supported GPU: not tested here."""

import json

import pytest

from stylert.engine.build import stage as B
from stylert.engine.build import tensorrt as trt_build
from stylert.engine.backends.trt import flavour as F
from stylert.engine.errors import StyleRTError
from stylert.engine.build.profiles import ProfileSpec

pytestmark = pytest.mark.tensorrt_rtx


@pytest.fixture(scope="module", autouse=True)
def rtx():
    if not F.installed_version("tensorrt_rtx"):
        pytest.skip("TensorRT-RTX is not installed (pip install 'stylert[tensorrt-rtx]')")


def _cfg(export, out, **kw):
    base = dict(export_dir=str(export), out=str(out), backend="tensorrt", tensorrt_flavour="tensorrt_rtx",
                calib_count=4, calib_size=64, eval_count=2, profile=ProfileSpec(1, 2, 4, 64, 64, 128))
    return B.BuildConfig(**{**base, **kw})


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_builds_real_plans_on_a_cpu(tiny_export, tmp_path, precision):
    man = B.build_engine(_cfg(tiny_export, tmp_path / "e", precision=precision), log=lambda *a: None)
    for role in ("encoder", "decoder"):
        plan = tmp_path / "e" / f"{role}.plan"
        assert plan.stat().st_size > 1000 and man["build"]["flags"]["plan_bytes"][role] == plan.stat().st_size
    dev = man["device"]
    assert dev["flavour"] == "tensorrt_rtx" and dev["targets"] == list(F.FLAVOURS["tensorrt_rtx"].compute_capabilities)
    assert man["versions"]["backend"] == F.installed_version("tensorrt_rtx")
    assert man["build"]["flags"]["timing_cache"] is None and man["build"]["flags"]["workspace_bytes"] is None
    # the decoder's profile covers both of its inputs, the style offset included
    assert set(man["profile"]["shapes"]["decoder"]) == {"latent", "style"}
    assert json.loads((tmp_path / "e" / "engine.json").read_text())["device"]["flavour"] == "tensorrt_rtx"


def test_selected_targets_are_recorded(tiny_export, tmp_path):
    man = B.build_engine(_cfg(tiny_export, tmp_path / "e", precision="fp16", compute_capability=("8.6",)), log=lambda *a: None)
    assert man["device"]["targets"] == ["8.6"] and man["build"]["flags"]["compute_capabilities"] == ["8.6"]
    with pytest.raises(StyleRTError, match="cannot target compute capability 9.0"):
        B.build_engine(_cfg(tiny_export, tmp_path / "f", precision="fp16", compute_capability=("9.0",)), log=lambda *a: None)


def test_a_corrupt_onnx_gives_the_parsers_errors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf")
    with pytest.raises(StyleRTError, match="parser rejected"):
        trt_build.build_plan(bad, tmp_path / "x.plan", {}, flavour="tensorrt_rtx", log=lambda *a: None)
    assert not (tmp_path / "x.plan").exists()


def test_an_asymmetric_qdq_model_is_refused(tiny_export, tmp_path):
    import numpy as np
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from stylert.engine.build import precision as P

    u8 = tmp_path / "u8.onnx"
    x = np.random.default_rng(0).random((4, 3, 64, 64), dtype=np.float32)
    quantize_static(str(tiny_export / "encoder.onnx"), str(u8), P.ArrayReader({"image": x}),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    shapes = {"image": {"min": (1, 3, 64, 64), "opt": (1, 3, 64, 64), "max": (2, 3, 64, 64)}}
    with pytest.raises(StyleRTError):
        trt_build.build_plan(u8, tmp_path / "u8.plan", shapes, flavour="tensorrt_rtx", log=lambda *a: None)


def test_a_profile_beyond_the_workspace_limit_names_the_limit(tiny_export, tmp_path):
    with pytest.raises(StyleRTError, match="workspace limit \\(1 MiB\\)"):
        B.build_engine(_cfg(tiny_export, tmp_path / "e", precision="fp32", workspace_mb=1,
                            profile=ProfileSpec(1, 16, 64, 64, 512, 2048)), log=lambda *a: None)
    assert not (tmp_path / "e").exists()


def test_flavour_choice_and_what_runs_where(monkeypatch):
    monkeypatch.setenv(F.ENV, "tensorrt_rtx")
    assert F.choose().name == "tensorrt_rtx" and F.choose("tensorrt").name == "tensorrt"
    monkeypatch.setenv(F.ENV, "tensorrt-llm")
    with pytest.raises(StyleRTError, match="unknown TensorRT flavour"):
        F.choose()
    # an H100 cannot run a TensorRT-RTX plan: the message names the flavour that can
    why = F.cannot_run("tensorrt_rtx", "9.0")
    assert "9.0" in why and "datacenter flavour (tensorrt)" in why
    assert F.cannot_run("tensorrt_rtx", "8.9") is None and F.cannot_run("tensorrt", "9.0") is None


def test_the_runtime_refuses_a_plan_of_another_flavour_version(tiny_export, tmp_path):
    from stylert.engine import manifest as M

    man = B.build_engine(_cfg(tiny_export, tmp_path / "e", precision="fp16"), log=lambda *a: None)
    here = {"type": "cuda", "name": "NVIDIA L4", "compute_capability": "8.9"}
    M.check_engine(man, F.installed_version("tensorrt_rtx"), here)  # the right GPU and version: fine
    with pytest.raises(StyleRTError, match="version differs"):
        M.check_engine(man, "1.5.0", here)
    with pytest.raises(StyleRTError, match="datacenter flavour"):
        M.check_engine(man, F.installed_version("tensorrt_rtx"), {**here, "name": "NVIDIA H100", "compute_capability": "9.0"})
