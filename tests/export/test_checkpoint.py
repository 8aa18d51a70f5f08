import json
import shutil

import pytest

pytest.importorskip("torch")

from stylert.engine.errors import StyleRTError  # noqa: E402
from stylert.export.checkpoint import load_model  # noqa: E402


def test_roundtrip(tiny_checkpoint):
    model, sha = load_model(tiny_checkpoint)
    assert len(sha) == 64 and not model.training


def test_missing_folder(tmp_path):
    with pytest.raises(StyleRTError, match="does not exist"):
        load_model(tmp_path / "nope")


def test_corrupt_weights_named(tiny_checkpoint, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_checkpoint, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(StyleRTError, match="model.safetensors") as e:
        load_model(bad)
    assert "corrupt" in str(e.value)


def test_pickle_is_refused(tiny_checkpoint, tmp_path):
    """A pickled file in place of the safetensors weights is rejected, never unpickled."""
    import pickle

    bad = tmp_path / "pickled"
    shutil.copytree(tiny_checkpoint, bad)
    (bad / "model.safetensors").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(StyleRTError, match="safetensors"):
        load_model(bad)


def test_config_that_does_not_match_the_weights(tiny_checkpoint, tmp_path):
    bad = tmp_path / "mismatch"
    shutil.copytree(tiny_checkpoint, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["latent_channels"] = 12
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(StyleRTError, match="do not match config.json"):
        load_model(bad)
