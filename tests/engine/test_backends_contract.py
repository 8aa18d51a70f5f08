"""ONE contract test for every runner the machine has (Polygraphy's habit): the same
checks against ONNX Runtime, OpenVINO, PyTorch, and (where present) CUDA and TensorRT."""

import numpy as np
import pytest

from stylert.engine.cuda_mix import cuda_device_count
from stylert.engine.errors import StyleRTError
from stylert.engine import mixing
from stylert.engine.runtime import Engine

TOL = 1e-4  # FP32 backends agree with the ONNX Runtime CPU reference to the export tolerance


def _has_torch_cuda():
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _has_ort_cuda():
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers() and cuda_device_count() > 0


BACKENDS = [
    pytest.param(("onnxruntime", "cpu"), id="onnxruntime-cpu"),
    pytest.param(("openvino", "cpu"), id="openvino-cpu"),
    pytest.param(("torch", "cpu"), id="torch-cpu"),
    pytest.param(("onnxruntime", "cuda"), id="onnxruntime-cuda", marks=pytest.mark.gpu),
    pytest.param(("torch", "cuda"), id="torch-cuda", marks=pytest.mark.gpu),
]


@pytest.fixture(params=BACKENDS)
def engine(request, tiny_export):
    backend, device = request.param
    if backend == "torch":
        pytest.importorskip("torch", reason="the torch backend needs PyTorch")
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino backend needs OpenVINO: pip install 'stylert[openvino]'")
    if device == "cuda" and not (_has_torch_cuda() if backend == "torch" else _has_ort_cuda()):
        pytest.skip("torch on CUDA needs a GPU and a CUDA build of torch" if backend == "torch" else "onnxruntime on CUDA needs a GPU and onnxruntime-gpu")
    eng = Engine.load(tiny_export, backend=backend, device=device, precision="fp32")
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def reference(tiny_export):
    eng = Engine.load(tiny_export, backend="onnxruntime", device="cpu")
    yield eng
    eng.close()


def test_contract(engine, reference, rng):
    c = engine.contract
    assert engine.info["backend"] in ("onnxruntime", "openvino", "torch", "tensorrt") and engine.info["reason"]
    x = rng.random((3, 3, 48, 64), dtype=np.float32)
    z, s = engine.encode(x)
    assert z.shape == c.latent_shape(3, 48, 64) and z.dtype == np.float32
    assert s.shape == (3, c.style_size) and s.dtype == np.float32 and np.all(s[:, c.style_size // 2:] > 0)
    off = s[::-1] - s  # each image's offset towards another's code: the style head runs
    y = engine.decode(z, off)
    assert y.shape == x.shape and y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1
    # batch independence: one image alone gives the same as inside a batch
    z1, s1 = engine.encode(x[1:2])
    np.testing.assert_allclose(z1, z[1:2], atol=1e-5)
    np.testing.assert_allclose(s1, s[1:2], rtol=1e-4, atol=1e-5)
    # agreement with the ONNX Runtime CPU reference
    zr, sr = reference.encode(x)
    assert np.abs(z - zr).max() <= TOL and np.abs(s - sr).max() <= TOL * (1 + np.abs(sr).max())
    assert np.abs(y - reference.decode(z, off)).max() <= TOL
    # the decoder reads the offset: none at all (the reconstruction) is another picture
    assert np.abs(y - reference.decode(z)).max() > TOL
    assert np.abs(engine.decode(z, np.zeros_like(s)) - reference.decode(z)).max() <= TOL
    # the fused path equals encode -> NumPy mix -> decode
    k = c.style_size // 2
    # a code the model could give (StyleCode.out_of_range accepts it), not any image's own: a mix of two
    w = rng.uniform(0.2, 0.8)
    code = mixing.StyleCode(w * sr[0, :k] + (1 - w) * sr[1, :k], w * sr[0, k:] + (1 - w) * sr[1, k:])
    fused = engine.stylize_batch(x, code, strength=0.7)
    ref = reference.decode(*reference.mix(zr, sr, code, strength=0.7))
    assert np.abs(fused - ref).max() <= 1e-3


def test_contract_rejects_bad_shapes(engine):
    c = engine.contract
    for bad in (np.zeros((1, 3, 30, 32), np.float32), np.zeros((1, 4, 32, 32), np.float32), np.zeros((3, 32, 32), np.float32)):
        with pytest.raises(StyleRTError):
            engine.runner.encode(bad)
    with pytest.raises(StyleRTError):
        engine.runner.decode(np.zeros((1, c.latent_channels + 1, 4, 4), np.float32), np.ones((1, c.style_size), np.float32))
    with pytest.raises(StyleRTError):  # a code of another model
        engine.runner.decode(np.zeros((1, c.latent_channels, 4, 4), np.float32), np.ones((1, c.style_size + 2), np.float32))
    with pytest.raises(StyleRTError):
        engine.runner.encode(np.zeros((0, 3, 32, 32), np.float32))

