"""build-engine's ONNX Runtime step: the precision ONNX models -> the optimized models the
runtime loads (`*.ort.onnx`), so start-up does not redo the graph optimizations."""

from __future__ import annotations

from pathlib import Path

from ..precisions import PRECISIONS

ORT_SUFFIX = ".ort.onnx"


def build_artifacts(tmp: Path, cfg, shapes: dict, conv: dict, log=print):
    """-> (files, flags, sessions for the accuracy check, what they measure). For INT8 a CPU
    copy folds each ReLU into a uint8 quantize step first (precision.fold_relu_uint8: without
    it ONNX Runtime leaves a third of the convolutions in float), after putting back the
    Q/DQ pairs on the quantized convolutions' outputs that the shared file leaves out
    (precision.add_output_qdq: ONNX Runtime's int8 kernels write int8)."""
    from . import precision as P
    from ..manifest import BuildArtifacts, cpu_info, file_entry

    files = {}
    for role in ("encoder", "decoder"):
        pre = tmp / f"{role}.onnx"
        if PRECISIONS[cfg.precision].calibrated:  # Q/DQ files: ONNX Runtime's CPU form
            pre = tmp / f".{role}.cpu.onnx"
            P.add_output_qdq(tmp / f"{role}.onnx", pre, conv[role].get("ort_output_scales", {}))
            conv[role]["cpu_form"] = {**P.fold_relu_uint8(pre, pre), "output_qdq": len(conv[role].get("ort_output_scales", {}))}
        art = tmp / f"{role}{ORT_SUFFIX}"
        P.session(pre, threads=cfg.threads, level=cfg.opt_level, optimized_path=art)
        if pre.name.startswith("."):
            pre.unlink()
        files[role] = file_entry(tmp, art, role)
        files[role]["session"] = {"graph_optimization_level": "disable", "intra_op_num_threads": cfg.threads}
    flags = {"graph_optimization_level": cfg.opt_level, "intra_op_num_threads": cfg.threads}
    import onnxruntime

    sessions = [P.session(tmp / files[r]["path"], threads=cfg.threads, level="disable") for r in ("encoder", "decoder")]
    return BuildArtifacts(files, flags, sessions, "onnxruntime, the saved optimized models (as the runtime loads them)",
                          cpu_info(), onnxruntime.__version__)
