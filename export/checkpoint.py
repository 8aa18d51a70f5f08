"""Checkpoints: weights in safetensors, the VAEConfig as JSON beside them. Loading never
unpickles, so an untrusted checkpoint cannot execute code."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stylert.engine.artifacts import SHIPPED_MODEL_DIR as DEFAULT_MODEL_DIR
from stylert.engine.artifacts import sha256_file as file_sha256
from stylert.engine.contract import ModelContract
from stylert.engine.errors import StyleRTError
from stylert.engine.images import atomic_write_bytes

from .model import VAE, VAEConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_model(model: VAE, folder: str | os.PathLike, extra: dict | None = None) -> None:
    """Write model.safetensors and config.json into `folder`, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{WEIGHTS_FILE}.tmp"
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, folder / WEIGHTS_FILE)
    meta = {"model": model.cfg.to_dict(), **(extra or {})}
    atomic_write_bytes(folder / CONFIG_FILE, json.dumps(meta, indent=2).encode())


def load_model(folder: str | os.PathLike | None = None) -> tuple[VAE, str]:
    """Load a checkpoint folder -> (model in eval mode on CPU, sha256 of the weights)."""
    folder = Path(folder) if folder is not None else DEFAULT_MODEL_DIR
    wpath, cpath = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not folder.is_dir():
        raise StyleRTError("checkpoint folder does not exist.", f"Expected a folder with {WEIGHTS_FILE} and {CONFIG_FILE} (written by `stylert train`).", path=folder)
    for p in (wpath, cpath):
        if not p.is_file():
            raise StyleRTError("is missing.", f"A checkpoint folder holds {WEIGHTS_FILE} and {CONFIG_FILE}.", path=p)
    try:
        cfg = VAEConfig.from_dict(json.loads(cpath.read_text())["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise StyleRTError(f"is not a valid model config: {e}.", "It should be the config.json written by `stylert train`.", path=cpath) from None
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise StyleRTError(f"is not a readable safetensors file: {e}.", "The checkpoint is corrupt or truncated; retrain or re-download it.", path=wpath) from None
    model = VAE(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:3]
        raise StyleRTError(
            "weights do not match config.json: " + " ".join(first),
            "The config and the weights come from different models; keep them together.",
            path=wpath,
        ) from None
    return model.eval(), file_sha256(wpath)


def contract_for(model: VAE, sha256: str, opset: int | None = None) -> ModelContract:
    """The contract of a trained model: the one place a VAEConfig becomes a ModelContract."""
    return ModelContract(latent_channels=model.cfg.latent_channels, style_channels=model.cfg.style_channels,
                         downsample=model.cfg.downsample, decoder_tiles=not model.cfg.style_norm, checkpoint_sha256=sha256,
                         **({"opset": opset} if opset is not None else {}))
