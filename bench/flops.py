"""Work per image, counted from the ONNX graph, and the machine's peak, measured.

FLOPs: a multiply-add counts 2. Conv: 2 x N x Cout x Hout x Wout x (Cin / group) x kh x kw
(+ N x Cout x Hout x Wout for the bias); Gemm/MatMul likewise; element-wise ops count one
per output element. Shapes come from ONNX shape inference with the input pinned to
(1, 3, H, W), so the counts are per image.

Bytes: weights (initializers, read once per batch) and activations (every node's inputs
read plus outputs written, as if nothing were fused: an upper bound on traffic that a fusing
runtime lowers). Their ratio to FLOPs is the arithmetic intensity a roofline needs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

_ELEMENTWISE = {"Relu", "Add", "Sub", "Mul", "Div", "Clip", "Sigmoid", "Tanh", "Exp", "Sqrt", "Max", "Min", "Pow", "LeakyRelu"}
_ELEM_SIZE = {1: 4, 10: 2, 16: 2, 2: 1, 3: 1, 6: 4, 7: 8, 11: 8}  # onnx TensorProto elem types


@dataclass
class Work:
    flops: float  # per image
    conv_flops: float
    weight_bytes: int  # per model (per batch)
    activation_bytes: float  # per image, unfused upper bound
    nodes: int

    def to_dict(self) -> dict:
        return asdict(self)

    def __add__(self, o: "Work") -> "Work":
        return Work(self.flops + o.flops, self.conv_flops + o.conv_flops, self.weight_bytes + o.weight_bytes, self.activation_bytes + o.activation_bytes, self.nodes + o.nodes)


def _shape(vi) -> list[int] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    return None if any(d <= 0 for d in dims) else dims


def count_onnx(path_or_model, height: int, width: int) -> Work:
    """FLOPs and bytes per image of the ONNX model at an image (1, C, height, width) or, for a
    latent input, at (1, C, height / 8, width / 8) (the model's own downsample is not known
    here; the caller passes the input's spatial size)."""
    import onnx

    m = onnx.load(path_or_model) if isinstance(path_or_model, str) or hasattr(path_or_model, "__fspath__") else path_or_model
    m = onnx.ModelProto.FromString(m.SerializeToString())  # pin shapes on a copy
    inits = {i.name: i for i in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        for d, v in zip(dims, [1, None, height, width]):
            if v is not None:
                d.ClearField("dim_param")
                d.dim_value = v
    m = onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    shapes: dict[str, tuple[list[int], int]] = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        s = _shape(vi)
        if s is not None:
            shapes[vi.name] = (s, _ELEM_SIZE.get(vi.type.tensor_type.elem_type, 4))
    for name, init in inits.items():
        shapes[name] = (list(init.dims), _ELEM_SIZE.get(init.data_type, 4))

    flops = conv = 0.0
    act = 0.0
    for node in m.graph.node:
        outs = [shapes.get(o) for o in node.output if o]
        if node.op_type in ("Conv", "QLinearConv", "ConvInteger") and outs and outs[0]:
            x_idx, w_idx = (0, 3) if node.op_type == "QLinearConv" else (0, 1)
            w = shapes.get(node.input[w_idx])
            if w is None:
                raise ValueError(f"Conv {node.name}: weight shape unknown")
            (n, cout, *spatial), _ = outs[0]
            k = int(np.prod(w[0][2:]))
            cin_g = w[0][1]  # weights are (Cout, Cin / group, kh, kw)
            out_el = n * cout * int(np.prod(spatial))
            f = 2.0 * out_el * cin_g * k + (out_el if len(node.input) > 2 else 0)
            flops += f
            conv += f
        elif node.op_type in ("MatMul", "Gemm") and outs and outs[0]:
            a = shapes.get(node.input[0])
            if a is not None:
                flops += 2.0 * int(np.prod(outs[0][0])) * a[0][-1]
        elif node.op_type in _ELEMENTWISE and outs and outs[0]:
            flops += float(np.prod(outs[0][0]))
        for name in list(node.input) + list(node.output):
            if name and name in shapes and name not in inits:
                s, b = shapes[name]
                act += float(np.prod(s)) * b
    wbytes = int(sum(int(np.prod(i.dims)) * _ELEM_SIZE.get(i.data_type, 4) for i in inits.values()))
    return Work(flops, conv, wbytes, act, len(m.graph.node))


def count_export(folder, height: int, width: int, downsample: int = 8) -> Work:
    """Encoder at (1, 3, H, W) plus decoder at (1, C, H / downsample, W / downsample)."""
    import os

    enc = count_onnx(os.path.join(folder, "encoder.onnx"), height, width)
    dec = count_onnx(os.path.join(folder, "decoder.onnx"), height // downsample, width // downsample)
    return enc + dec


def measure_peak(n: int = 2048, reps: int = 3, threads: int | None = None, min_time: float = 0.5) -> dict:
    """The machine's FP32 matmul peak right now (best of at least `reps` n x n products and
    `min_time` seconds, torch's BLAS and ONNX Runtime's MatMul), in GFLOP/s. Measured in the
    same run as the configurations, so both see the same load; on a shared machine it is a
    lower bound (a busy moment lowers it), which bench reports when a configuration exceeds it.
    torch's MKL may pick AVX2 kernels on AMD CPUs while ONNX Runtime's MLAS uses AVX-512, so
    the best of the two is the peak."""
    out = {"n": n, "reps": reps, "min_time_s": min_time}
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    # NumPy's OpenBLAS is left out: it was the slowest of the three here (38 vs 77 GFLOP/s
    # for MLAS in one measurement) and it stalled for minutes on the overloaded machine.
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ta @ tb
        best = _best(lambda: ta @ tb, reps, min_time)
        out["torch_gflops"] = 2.0 * n**3 / best / 1e9
    except ImportError:
        pass
    try:
        out["onnxruntime_gflops"] = _ort_matmul_gflops(a, b, reps, min_time, threads)
    except ImportError:
        pass
    out["peak_gflops"] = max((v for k, v in out.items() if k.endswith("_gflops")), default=0.0)
    # The ceilings of the other precisions, so no row is judged against a peak it is not
    # bound by: int8 (VNNI does 4 multiply-adds per lane where float does 1) and bf16.
    try:
        out["int8_peak_gops"] = _ort_matmul_int8_gops(n, reps, min_time, threads)
    except ImportError:
        pass
    # Only where the CPU computes bf16 natively: elsewhere torch emulates it (a 2048^3 product
    # took about a minute on a 2-core AVX2 EPYC, for a figure no row is judged against, since
    # OpenVINO runs float32 kernels there: peak_for takes the fp32 peak).
    from stylert.engine.frontend import NATIVE_BF16_FLAGS
    from stylert.engine.manifest import cpu_info

    if NATIVE_BF16_FLAGS & set(cpu_info()["features"]):
        try:
            out["bf16_peak_gflops"] = _torch_bf16_gflops(a, b, reps, min_time)
        except ImportError:
            pass
    return out


def peak_for(peak: dict, precision: str) -> float:
    """The ceiling a configuration of `precision` is measured against: the higher of its own
    precision's peak (int8 GEMM for int8, bf16 matmul for bf16) and the fp32 one. A backend
    runs float32 kernels where the CPU lacks the precision's instructions (OpenVINO's BF16 on a
    CPU without AVX512_BF16 or AMX, where torch's emulated bf16 matmul is 100x slower), and fp16
    on a CPU runs float32 kernels: a row is never judged against a ceiling below what it ran."""
    key = {"int8": "int8_peak_gops", "bf16": "bf16_peak_gflops"}.get(precision, "peak_gflops")
    return max(peak.get(key) or 0.0, peak["peak_gflops"])


def _ort_matmul_int8_gops(n: int, reps: int, min_time: float, threads: int | None) -> float:
    """ONNX Runtime's MatMulInteger (uint8 x int8 -> int32, the u8s8 kernels its QLinearConv
    uses), n x n, in giga multiply-add x 2 per second."""
    from onnx import TensorProto, helper

    from stylert.engine.backends.onnxrt.session import make_session

    g = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "mmi",
                          [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
                           helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
                          [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    s = make_session(m.SerializeToString(), threads or 0)
    rng = np.random.default_rng(2)
    feed = {"a": rng.integers(0, 255, (n, n), dtype=np.uint8), "b": rng.integers(-127, 127, (n, n), dtype=np.int8)}
    s.run(None, feed)
    return 2.0 * n**3 / _best(lambda: s.run(None, feed), reps, min_time) / 1e9


def _torch_bf16_gflops(a: np.ndarray, b: np.ndarray, reps: int, min_time: float) -> float:
    import torch

    ta, tb = torch.from_numpy(a).bfloat16(), torch.from_numpy(b).bfloat16()
    ta @ tb
    return 2.0 * a.shape[0] ** 3 / _best(lambda: ta @ tb, reps, min_time) / 1e9


def _timed(fn) -> float:
    t = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t) / 1e9


def _best(fn, reps: int, min_time: float) -> float:
    t_end = time.perf_counter() + min_time
    times = []
    while len(times) < reps or time.perf_counter() < t_end:
        times.append(_timed(fn))
    return min(times)


def _ort_matmul_gflops(a: np.ndarray, b: np.ndarray, reps: int, min_time: float, threads: int | None) -> float:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = a.shape[0]
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in ("a", "b")],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {"a": a, "b": b}
    s.run(None, feed)
    return 2.0 * n**3 / _best(lambda: s.run(None, feed), reps, min_time) / 1e9
