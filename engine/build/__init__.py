"""The build stage (`stylert build-engine`): an export folder -> an engine folder for one
backend and precision, gated on accuracy. `stage.py` holds the steps and BuildConfig,
`precision.py` the ONNX conversions (FP16, INT8 Q/DQ), `onnxrt.py`, `openvino.py` and
`tensorrt.py` each backend's artifact, `profiles.py` TensorRT's shape ranges, `cli.py` the
verb. The runtime (`engine/`) never imports it, except `frontend.fastest_engine`, which builds
the shipped model's CPU engine on first use."""

from .stage import BuildConfig, build_engine, choose_backend  # noqa: F401
