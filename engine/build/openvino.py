"""build-engine's OpenVINO step: the precision ONNX models are the artifacts (OpenVINO reads
ONNX directly and caches its compiled form at run time); what the build adds is the
inference precision hint, measured by the accuracy gate with OpenVINO itself."""

from __future__ import annotations

from pathlib import Path


def build_artifacts(tmp: Path, cfg, shapes: dict, conv: dict, log=print):
    import openvino as ov

    from ..artifacts import contract_of
    from ..manifest import BuildArtifacts, cpu_info, file_entry
    from ..backends.openvino.runner import Session, float_hint

    contract = contract_of(cfg.export_dir)
    hint = float_hint(cfg.precision)
    log(f"  OpenVINO {ov.__version__}: inference precision hint {hint} for the float parts")
    files = {role: file_entry(tmp, tmp / f"{role}.onnx", role) for role in ("encoder", "decoder")}
    sessions = [Session(tmp / f"{r}.onnx", hint, cfg.threads, contract, r) for r in ("encoder", "decoder")]
    flags = {"inference_precision_hint": hint, "threads": cfg.threads}
    return BuildArtifacts(files, flags, sessions, f"openvino {ov.__version__} on the CPU, hint {hint}",
                          cpu_info(), ov.__version__)
