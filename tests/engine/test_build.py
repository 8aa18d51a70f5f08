"""build-engine end to end on the tiny model (ONNX Runtime backend), the accuracy gate, and
the TensorRT path where TensorRT and a GPU exist."""

import json

import numpy as np
import pytest

pytest.importorskip("onnx")

from stylert.engine.build import stage as B  # noqa: E402
from stylert.engine import manifest as M  # noqa: E402
from stylert.engine.cli import main  # noqa: E402
from stylert.engine.errors import StyleRTError  # noqa: E402
from stylert.engine.build.profiles import ProfileSpec  # noqa: E402


def cfg(export, out, **kw):
    # The shipped calib_data/ at 64x64, a few images: fast; evaluation on other shipped images.
    base = dict(export_dir=str(export), out=str(out), backend="onnxruntime", calib_count=4, calib_size=64,
                eval_dir=str(B.SHIPPED_CALIB_DIR), eval_count=2, threads=2)
    return B.BuildConfig(**{**base, **kw})


def quiet(*a, **k):
    pass


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_build_writes_verified_engine(tiny_export, tmp_path, precision):
    out = tmp_path / f"engine-{precision}"
    man = B.build_engine(cfg(tiny_export, out, precision=precision), log=quiet)
    # The engine loads through the runtime and reproduces the build's numbers.
    from stylert.engine.runtime import Engine

    from stylert.engine.build import precision as P
    from stylert.engine.compare import compare

    eng = Engine.load(out)
    assert eng.info["kind"] == "engine"
    x = P.load_batch(sorted(B.SHIPPED_CALIB_DIR.glob("*.jpg"))[-2:], 64)
    z, s = P.run_batched(P.session(tiny_export / "encoder.onnx"), {"image": x})
    off = s[::-1] - s  # stylized: each image towards the other's code
    ref = P.run_batched(P.session(tiny_export / "decoder.onnx"), {"latent": z, "style": off})[0]
    z8, s8 = eng.encode(x)
    assert compare(eng.decode(z8, s8[::-1] - s8), ref).psnr_db >= B.DEFAULT_MIN_PSNR[precision]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["engine.json", "encoder.onnx", "decoder.onnx", "encoder.ort.onnx", "decoder.ort.onnx"])
    got = M.read_engine_manifest(out)
    assert got["precision"] == precision and got["backend"] == "onnxruntime"
    assert got["source"]["encoder"]["sha256"] == json.loads((tiny_export / "manifest.json").read_text())["files"]["encoder"]["sha256"]
    # A fresh engine passes the runtime's staleness check on this machine.
    M.check_engine(got, M.backend_version("onnxruntime"), M.cpu_info(),
                   export_manifest=json.loads((tiny_export / "manifest.json").read_text()), folder=out)
    for name in ("calibration", "photos"):
        r = got["accuracy"]["sets"][name]
        assert r["passed"] and r["image_psnr_db"] >= B.DEFAULT_MIN_PSNR[precision]
        assert r["latent_max_abs"] >= 0
    acc = got["accuracy"]
    assert len(acc["calibration_images"]) == 4 and len(acc["photo_images"]) == 2
    assert set(acc["calibration_images"]).isdisjoint(acc["photo_images"])
    assert got["build"]["command"].startswith("stylert build-engine ")
    assert got["profile"]["shapes"]["encoder"]["image"]["opt"] == [16, 3, 256, 256]
    assert (got["profile"]["min_batch"], got["profile"]["max_batch"], got["profile"]["max_size"]) == (1, 32, 512)
    assert man["build"]["seconds"] >= 0
    if precision == "int8":
        from stylert.engine.build.precision import check_qdq_symmetric

        assert check_qdq_symmetric(out / "encoder.onnx") == [] and check_qdq_symmetric(out / "decoder.onnx") == []


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_openvino_engine_is_gated_with_openvino_and_loads(tiny_export, tmp_path, precision):
    pytest.importorskip("openvino", reason="the openvino backend needs OpenVINO: pip install 'stylert[openvino]'")
    from stylert.engine.backends.openvino.runner import float_hint
    from stylert.engine.runtime import Engine

    out = tmp_path / f"ov-{precision}"
    man = B.build_engine(cfg(tiny_export, out, precision=precision, backend="openvino"), log=quiet)
    assert man["backend"] == "openvino" and man["precision"] == precision
    assert man["build"]["flags"]["inference_precision_hint"] == float_hint(precision)
    assert man["accuracy"]["measured_with"].startswith("openvino")
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "engine.json"]
    with Engine.load(out) as eng:
        assert eng.info["backend"] == "openvino" and eng.info["inference_precision_hint"] == float_hint(precision)
        x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
        assert eng.decode(*eng.encode(x)).shape == x.shape
    M.check_engine(M.read_engine_manifest(out), M.backend_version("openvino"), M.cpu_info(), folder=out)


def test_bf16_is_an_openvino_precision_only(tiny_export, tmp_path):
    with pytest.raises(StyleRTError, match="(?s)no bf16 engines.*--backend openvino"):
        B.build_engine(cfg(tiny_export, tmp_path / "e", precision="bf16", backend="onnxruntime"), log=quiet)
    assert not (tmp_path / "e").exists()


def test_gate_failure_writes_nothing(tiny_export, tmp_path):
    out = tmp_path / "engine"
    with pytest.raises(StyleRTError, match="accuracy check failed.*nothing was written"):
        B.build_engine(cfg(tiny_export, out, precision="int8", min_psnr=500.0), log=quiet)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left behind


def test_cli_gate_exit_code_and_success(tiny_export, tmp_path, capsys):
    out = tmp_path / "e"
    args = ["build-engine", str(tiny_export), "--fp16", "--backend", "onnxruntime", "--out", str(out),
            "--calib-count", "3", "--calib-size", "64", "--eval-dir", str(B.SHIPPED_CALIB_DIR), "--eval-count", "2"]
    assert main(args + ["--min-psnr", "999"]) == 2
    assert "below 999 dB" in capsys.readouterr().err and not out.exists()
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "backend: onnxruntime (requested" in text and "stylized PSNR" in text
    assert M.read_engine_manifest(out)["precision"] == "fp16"
    # An existing engine folder is replaced only with --overwrite.
    before = (out / "engine.json").read_bytes()
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "engine.json").read_bytes() == before
    assert main(args + ["--overwrite"]) == 0 and (out / "engine.json").read_bytes() != before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # old folder cleaned up


def test_refuses_foreign_output_folder(tiny_export, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StyleRTError, match="not an engine folder"):
        B.build_engine(cfg(tiny_export, tmp_path, precision="fp16"), log=quiet)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bad_inputs(tiny_export, tmp_path):
    with pytest.raises(StyleRTError, match="not a StyleRT export"):
        B.build_engine(cfg(tmp_path, tmp_path / "o"), log=quiet)
    with pytest.raises(StyleRTError, match="calibration folder does not exist"):
        B.build_engine(cfg(tiny_export, tmp_path / "o", calib_dir=str(tmp_path / "none")), log=quiet)
    with pytest.raises(StyleRTError, match="batch range"):
        B.build_engine(cfg(tiny_export, tmp_path / "o", profile=ProfileSpec(min_batch=8, opt_batch=4)), log=quiet)
    with pytest.raises(StyleRTError, match="precision"):
        B.BuildConfig(export_dir="x", precision="int4")


def test_default_out_and_backend_choice(tmp_path):
    assert B.BuildConfig(export_dir=str(tmp_path / "export"), precision="int8").default_out() == tmp_path / "engine-int8"
    backend, why = B.choose_backend("onnxruntime")
    assert backend == "onnxruntime" and "requested" in why
    backend, why = B.choose_backend("auto")
    from stylert.engine.build import tensorrt as trt_build

    ok, reason = trt_build.available()
    # the rule: TensorRT only where its engine runs (an ahead-of-time TensorRT-RTX build on a
    # machine without a GPU must be asked for), else OpenVINO where installed, else ONNX Runtime
    cpu = "openvino" if B.BACKENDS["openvino"].version() else "onnxruntime"
    assert backend == ("tensorrt" if ok and trt_build.runs_here() else cpu) and reason in why
    assert B.choose_backend("openvino")[0] == "openvino"
    if not ok:
        with pytest.raises(StyleRTError, match="--backend tensorrt"):
            B.choose_backend("tensorrt")


def test_sample_photographs_when_no_development_photos(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "DEV_PHOTOS_DIR", tmp_path / "absent")
    if B.sample_photo_dir() is None:
        pytest.skip("scikit-image (the bench extra) is not installed")
    calib, evals, label = B.gather_images(B.BuildConfig(export_dir="x", calib_count=8))
    assert len(calib) == 8 and [p.name for p in evals] == list(B.SAMPLE_PHOTOS) and "skimage" in label


def test_held_out_calibration_images_when_no_photos(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "DEV_PHOTOS_DIR", tmp_path / "absent")
    monkeypatch.setattr(B, "sample_photo_dir", lambda: None)
    c = B.BuildConfig(export_dir="x", calib_count=8)
    calib, evals, label = B.gather_images(c)
    assert len(calib) == 6 and len(evals) == 2 and not set(calib) & set(evals)
    assert "held out" in label


@pytest.mark.tensorrt
def test_tensorrt_plan_from_int8_onnx(tiny_export, tmp_path):
    from stylert.engine.build import tensorrt as trt_build

    ok, why = trt_build.available("tensorrt")
    if not ok or not trt_build.runs_here("tensorrt"):
        pytest.skip(f"the datacenter TensorRT on a GPU: {why}")
    man = B.build_engine(cfg(tiny_export, tmp_path / "trt", precision="int8", backend="tensorrt", tensorrt_flavour="tensorrt",
                             profile=ProfileSpec(1, 2, 4, 64, 64, 128), timing_cache=str(tmp_path / "tc")), log=quiet)
    assert (tmp_path / "trt" / "encoder.plan").is_file() and (tmp_path / "tc").is_file()
    assert man["device"]["type"] == "cuda"
    trt_build.load_and_check(tmp_path / "trt" / "decoder.plan")


def test_auto_rule_for_the_shipped_model_builds_its_fastest_gated_engine_once(tiny_export, tmp_path):
    """frontend.fastest_engine: OpenVINO BF16 where OpenVINO and native BF16 exist and the
    gate passes, built once into the cache; else the export as it is."""
    from stylert.engine.backends.openvino.runner import native_bf16
    from stylert.engine.frontend import fastest_engine

    said = []
    got = fastest_engine(tiny_export, tmp_path, log=said.append)
    if not B.BACKENDS["openvino"].version() or not native_bf16():
        assert got == tiny_export and all(s.startswith("tip:") for s in said)
        return
    if got == tiny_export:  # the gate refused it: said so, and the export runs
        assert any("not used" in s for s in said)
        return
    man = M.read_engine_manifest(got)
    assert (man["backend"], man["precision"]) == ("openvino", "bf16") and man["accuracy"]["sets"]["photos"]["passed"]
    said.clear()
    assert fastest_engine(tiny_export, tmp_path, log=said.append) == got and not said  # cached: no second build


@pytest.mark.parametrize("features, tip", [(["avx512f", "avx512_bf16"], True), (["avx512f", "amx_bf16"], True),
                                           (["avx2", "avx512f"], False)])
def test_auto_rule_without_openvino_runs_the_export_and_says_when_openvino_would_help(tiny_export, tmp_path,
                                                                                       monkeypatch, features, tip):
    """Without OpenVINO the export runs on ONNX Runtime; on a CPU with native BF16 a tip says
    how to install the faster backend, elsewhere nothing is said."""
    import dataclasses
    from stylert.engine import cuda_mix
    from stylert.engine.backends import BACKENDS
    from stylert.engine.frontend import fastest_engine

    monkeypatch.setattr(cuda_mix, "cuda_device_count", lambda: 0)
    monkeypatch.setitem(BACKENDS, "openvino", dataclasses.replace(BACKENDS["openvino"], library="stylert_no_such_module"))
    monkeypatch.setattr(M, "cpu_info", lambda *a: {"type": "cpu", "model": "test", "arch": "x86_64", "features": features})
    said = []
    assert fastest_engine(tiny_export, tmp_path, log=said.append) == tiny_export
    assert not list(tmp_path.iterdir())  # nothing built
    if tip:
        assert len(said) == 1 and "pip install 'stylert[openvino]'" in said[0]
    else:
        assert not said
