import copy
import json

import pytest

from stylert.engine import manifest as M
from stylert.engine.errors import StyleRTError

CPU = {"type": "cpu", "model": "Test CPU", "arch": "x86_64", "features": ["avx2", "avx512f", "fma"]}
GPU = {"type": "cuda", "name": "NVIDIA H100", "compute_capability": "9.0"}


def make_manifest(folder, backend="onnxruntime", device=CPU, version="1.32.0"):
    files = {}
    for role in ("encoder", "decoder"):
        p = folder / f"{role}.ort.onnx"
        p.write_bytes(role.encode())
        files[role] = {"path": p.name, "sha256": M.sha256_file(p)}
    m = {
        "kind": M.ENGINE_KIND, "format_version": M.FORMAT_VERSION, "backend": backend, "precision": "int8",
        "files": files,
        "source": {"export_dir": "/x/export", "encoder": {"sha256": "a" * 64}, "decoder": {"sha256": "b" * 64}},
        "contract": {}, "device": device, "os": {"system": "Linux"}, "versions": {"backend": version},
        "build": {"command": "stylert build-engine /x/export --precision int8 --backend onnxruntime --out /x/engine-int8"},
    }
    M.write_engine_manifest(folder, m)
    return m


def test_roundtrip_and_fresh_engine_passes(tmp_path):
    m = make_manifest(tmp_path)
    got = M.read_engine_manifest(tmp_path)
    assert got == json.loads(json.dumps(m))
    export = {"files": {"encoder": {"sha256": "a" * 64}, "decoder": {"sha256": "b" * 64}}}
    M.check_engine(got, "1.32.0", dict(CPU), export_manifest=export, folder=tmp_path, os_name="Linux")


def test_missing_and_corrupt_manifest(tmp_path):
    with pytest.raises(StyleRTError, match="not an engine folder"):
        M.read_engine_manifest(tmp_path)
    (tmp_path / M.ENGINE_MANIFEST_FILE).write_text("{nope")
    with pytest.raises(StyleRTError, match="not a valid engine manifest"):
        M.read_engine_manifest(tmp_path)
    make_manifest(tmp_path)
    m = json.loads((tmp_path / M.ENGINE_MANIFEST_FILE).read_text())
    m["kind"] = "stylert-export"
    (tmp_path / M.ENGINE_MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(StyleRTError, match="kind"):
        M.read_engine_manifest(tmp_path)


def _refused(m, *args, **kw):
    with pytest.raises(StyleRTError) as e:
        M.check_engine(m, *args, **{"os_name": "Linux", **kw})
    msg = str(e.value)
    assert "stylert build-engine /x/export --precision int8" in msg  # the rebuild command
    return msg


def test_version_mismatch(tmp_path):
    assert "version differs" in _refused(make_manifest(tmp_path), "1.33.0", CPU)


def test_cpu_feature_mismatch(tmp_path):
    here = {**CPU, "features": ["avx2", "fma"]}
    assert "avx512f" in _refused(make_manifest(tmp_path), "1.32.0", here)


def test_gpu_mismatch(tmp_path):
    m = make_manifest(tmp_path, backend="tensorrt", device=GPU, version="10.16.0")
    M.check_engine(m, "10.16.0", dict(GPU), os_name="Linux")
    assert "compute_capability" in _refused(m, "10.16.0", {**GPU, "compute_capability": "8.9"})
    assert "name differs" in _refused(m, "10.16.0", {**GPU, "name": "NVIDIA L4"})
    assert "cuda device" in _refused(m, "10.16.0", CPU)


def test_os_mismatch(tmp_path):
    assert "operating system" in _refused(make_manifest(tmp_path), "1.32.0", CPU, os_name="Windows")


def test_source_changed_and_artifact_modified(tmp_path):
    m = make_manifest(tmp_path)
    export = {"files": {"encoder": {"sha256": "c" * 64}, "decoder": {"sha256": "b" * 64}}}
    assert "encoder changed since the build" in _refused(m, "1.32.0", CPU, export_manifest=export)
    (tmp_path / "decoder.ort.onnx").write_bytes(b"tampered")
    assert "decoder artifact decoder.ort.onnx was modified" in _refused(m, "1.32.0", CPU, folder=tmp_path)


def test_rebuild_command_fallback():
    m = {"source": {"export_dir": "out/my export"}, "precision": "fp16", "backend": "tensorrt"}
    assert M.rebuild_command(m) == "stylert build-engine 'out/my export' --precision fp16 --backend tensorrt"


def test_cpu_info_parses_x86_and_arm(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu sse4_2 avx avx2 avx512f avx512_vnni foo\n\n"
                   "processor\t: 1\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu\n")
    info = M.cpu_info(str(x86))
    assert info["model"] == "AMD EPYC 9654"
    assert info["features"] == ["avx", "avx2", "avx512_vnni", "avx512f", "sse4_2"]
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm sve\nCPU part\t: 0xd40\n")
    assert M.cpu_info(str(arm))["features"] == ["asimd", "asimddp", "i8mm", "sve"]
    assert M.cpu_info(str(tmp_path / "absent"))["type"] == "cpu"


def test_engine_copy_is_not_mutated(tmp_path):
    m = make_manifest(tmp_path)
    before = copy.deepcopy(m)
    _refused(m, "0.0", CPU)
    assert m == before
