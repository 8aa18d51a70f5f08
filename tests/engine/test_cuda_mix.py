"""The AdaIN kernel: NVRTC compilation everywhere NVRTC is installed (no GPU needed); the
kernel against the NumPy reference on a GPU."""

import sys

import numpy as np
import pytest

from stylert.engine import cuda_mix, mixing
from stylert.engine.cuda_mix import _ok


def _nvrtc_or_skip():
    try:
        cuda_mix.nvrtc_version()
    except ImportError as e:
        pytest.skip(f"NVRTC unavailable: {e}")


def test_kernel_source_ships_with_the_package():
    src = cuda_mix.kernel_source()
    assert cuda_mix.KERNEL_NAME in src and "__global__" in src


@pytest.mark.parametrize("arch", ["compute_75", "compute_90"])
def test_kernel_compiles_with_nvrtc(arch, tmp_path, monkeypatch):
    _nvrtc_or_skip()
    monkeypatch.setenv("STYLERT_CACHE", str(tmp_path))
    ptx = cuda_mix.compile_ptx.__wrapped__(arch, use_disk_cache=True)
    assert b".entry adain_mix" in ptx and b".entry style_offset" in ptx and f".target sm_{arch.split('_')[1]}".encode() in ptx
    cached = list((tmp_path / "kernels").glob("adain-*.ptx"))
    assert len(cached) == 1 and cached[0].read_bytes() == ptx
    assert cuda_mix.compile_ptx.__wrapped__(arch, use_disk_cache=True) == ptx  # from the disk cache


def test_cuda_device_count_never_raises():
    assert cuda_mix.cuda_device_count() >= 0


# host arrays in and out, through the mixer's device buffers: the kernels against numpy
def offset_host(mixer, own: np.ndarray, style: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """own (N, 2K), style (2K,) or (N, 2K) -> the kernel's style offset."""
    cudart = mixer._cudart
    own = np.ascontiguousarray(own, np.float32)
    st = np.asarray(style, np.float32).reshape(-1, own.shape[1])
    k = own.shape[1] // 2
    stride = mixer.set_style(st[:, :k] if len(st) > 1 else st[0, :k], st[:, k:] if len(st) > 1 else st[0, k:])
    ptr = int(_ok(cudart.cudaMalloc(own.nbytes), "cudaMalloc"))
    try:
        _ok(cudart.cudaMemcpy(ptr, own.ctypes.data, own.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
        mixer.launch_code(ptr, ptr, own.shape[0], k, stride, strength)
        mixer.synchronize(0)
        out = np.empty_like(own)
        _ok(cudart.cudaMemcpy(out.ctypes.data, ptr, own.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost), "cudaMemcpy")
        return out
    finally:
        cudart.cudaFree(ptr)



def mix_host(mixer, z: np.ndarray, style_mean, style_std, strength: float = 1.0) -> np.ndarray:
    """z (N, C, H, W) -> the kernel's AdaIN."""
    cudart = mixer._cudart
    z = np.ascontiguousarray(z, np.float32)
    ptr = int(_ok(cudart.cudaMalloc(max(z.nbytes, 4)), "cudaMalloc"))
    try:
        _ok(cudart.cudaMemcpy(ptr, z.ctypes.data, z.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
        mixer.mix_device(ptr, ptr, z.shape, style_mean, style_std, strength, stream=0, sync=True)
        out = np.empty_like(z)
        _ok(cudart.cudaMemcpy(out.ctypes.data, ptr, z.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost), "cudaMemcpy")
        return out
    finally:
        cudart.cudaFree(ptr)


@pytest.mark.gpu
def test_kernel_matches_numpy_on_gpu(rng):
    _nvrtc_or_skip()
    if cuda_mix.cuda_device_count() == 0:
        pytest.skip("no CUDA GPU")
    mixer = cuda_mix.AdaINMixer()
    try:
        for shape in [(1, 16, 8, 8), (3, 16, 64, 96), (2, 4, 300, 7)]:
            z = (rng.standard_normal(shape) * 1.7 + 0.3).astype(np.float32)
            sm = rng.standard_normal((shape[0], shape[1])).astype(np.float32)
            ss = rng.uniform(0.3, 2.0, (shape[0], shape[1])).astype(np.float32)
            for strength in (1.0, 0.6):
                got = mix_host(mixer, z, sm, ss, strength)
                ref = mixing.adain(z, sm, ss, strength)
                np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-5)
            got = mix_host(mixer, z, sm[0], ss[0], 1.0)  # one style row shared by the batch
            np.testing.assert_allclose(got, mixing.adain(z, sm[0], ss[0]), atol=2e-5, rtol=1e-5)
        # the decoder's style offset: strength * (style - own), per sample or shared
        own = rng.standard_normal((3, 20)).astype(np.float32)
        style = rng.standard_normal((3, 20)).astype(np.float32)
        for s, strength in ((style, 0.3), (style[0], 1.0)):
            np.testing.assert_allclose(offset_host(mixer, own, s, strength),
                                       strength * (np.broadcast_to(s, own.shape) - own), atol=1e-6)
    finally:
        mixer.close()


def test_cuda_device_count_asks_cuda_python_only_where_a_driver_is(monkeypatch):
    import types

    calls = []
    runtime = types.SimpleNamespace(cudaGetDeviceCount=lambda: calls.append(1) or (0, 3))
    monkeypatch.setitem(sys.modules, "cuda.bindings", types.SimpleNamespace(runtime=runtime))
    monkeypatch.setattr(cuda_mix.sys, "platform", "linux")
    monkeypatch.setattr(cuda_mix.os.path, "exists", lambda p: False)
    assert cuda_mix.cuda_device_count() == 0 and not calls  # no /dev/nvidiactl: not even imported
    monkeypatch.setattr(cuda_mix.os.path, "exists", lambda p: p == "/dev/nvidiactl")
    assert cuda_mix.cuda_device_count() == 3 and calls == [1]
