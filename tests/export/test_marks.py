"""The drip probe (export/marks.py) tells a stylizer's own marks from the painting's."""

import zlib

import pytest

import numpy as np

from stylert.export.marks import measure, periodicity, probe, probe_contents

STYLES = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


def _grain_amplifier(c, style):  # every painting paints the content's grain: the drip failure
    tint = np.array([zlib.crc32(style.encode()) % 7 / 7.0, 0.5, 0.3], np.float32)
    return 0.5 * c + 0.5 * tint + 20 * (c - c.mean((0, 1)))


def _own_marks(c, style):  # each painting its own texture, whatever the content
    rng = np.random.default_rng(zlib.crc32(style.encode()))
    return 0.5 * c + 0.2 * rng.random(c.shape[:2] + (1,), np.float32)


def _vertical_drips(c, style):  # the same vertical marks every 16 px, for any painting
    x = np.arange(c.shape[1])
    drip = (np.sin(2 * np.pi * x / 16) > 0.7).astype(np.float32)[None, :, None]
    return c * (1 - 0.3 * drip)


def test_the_same_marks_for_every_painting_correlate_and_own_marks_do_not():
    contents = {"gradient+grain": probe_contents(64)["gradient+grain"]}
    same = probe(_grain_amplifier, STYLES, contents)["gradient+grain"]
    own = probe(_own_marks, STYLES, contents)["gradient+grain"]
    assert same["correlation"] > 0.9 and abs(own["correlation"]) < 0.1
    assert len(same["outputs"]) == len(STYLES) and same["amplitude"] > 1


def test_periodic_vertical_marks_are_found_and_grain_is_not():
    c = probe_contents(128)["gradient+grain"]
    drips = measure([_vertical_drips(c, s) for s in STYLES])
    grain = measure([_own_marks(c, s) for s in STYLES])
    assert drips["periodicity"] > 0.5 and drips["vertical"] > 3
    assert grain["periodicity"] < 0.3 and 0.7 < grain["vertical"] < 1.4
    assert periodicity(np.zeros((32, 32))) == (0.0, 0)
    assert periodicity(_vertical_drips(c, "a")[..., 0] - 0.5)[1] in (15, 16, 17)


def test_flat_content_gives_no_marks():
    flat = probe_contents(32)["flat"]
    r = measure([flat * 0.9, flat * 0.5])
    assert r["amplitude"] < 1e-3 and r["correlation"] == 0.0 and r["periodicity"] == 0.0


def test_a_published_method_is_probed_as_the_style_report_runs_it():
    __import__("pytest").importorskip("torch")
    from stylert.export.marks import peer_stylizer
    from stylert.export.peers import Peer

    class Negative(Peer):  # a peer's interface: (1, 3, H, W) tensors in [0, 1], a code per style path
        name = "negative"

        def encode_style(self, style_path):
            return len(str(style_path))

        def paint(self, c, code):
            return 1.0 - c

    c = probe_contents(32)["gradient+grain"]
    y = peer_stylizer(Negative())(c, "a.jpg")
    assert y.shape == c.shape and y.dtype == np.float32 and np.allclose(y, 1.0 - c, atol=1e-6)


def test_paths_trace_the_marks_to_the_decoders_inputs(tmp_path, tiny_checkpoint):
    """--paths: the decoder fed as the runtime feeds it, the latent alone, the offset alone and
    each FiLM removed. The latent alone is the decoder without an offset; removing every FiLM
    one by one leaves each a different picture from `both` (each layer's rows are found)."""
    torch = pytest.importorskip("torch")
    from PIL import Image

    from stylert.export.checkpoint import load_model
    from stylert.export.marks import path_stylizers

    rng = np.random.default_rng(0)
    style = tmp_path / "s.png"
    Image.fromarray((rng.random((32, 48, 3)) * 255).astype(np.uint8)).save(style)
    runs = path_stylizers(tiny_checkpoint)
    model, _ = load_model(tiny_checkpoint)
    assert list(runs)[:3] == ["both", "latent only", "offset only"]
    assert [k for k in runs if k.startswith("without ")] == [f"without {n}" for n in model.cfg.film_layers]
    c = rng.random((32, 32, 3)).astype(np.float32)
    both = runs["both"](c, str(style))
    assert both.shape == (32, 32, 3)
    with torch.no_grad():
        z, own = model.encoder.encode_with_style(torch.from_numpy(c).permute(2, 0, 1)[None])
        recon = model.decoder.image(z)[0].permute(1, 2, 0).numpy()
    assert not np.allclose(runs["latent only"](c, str(style)), recon, atol=1e-4)  # the AdaIN latent moved it
    for name in model.cfg.film_layers:
        assert not np.allclose(runs[f"without {name}"](c, str(style)), both, atol=1e-5), name


def test_blotches_find_marks_larger_than_the_9px_marks_see_and_not_a_clean_gradient():
    c = probe_contents()["gradient"]
    y = np.arange(c.shape[0])[:, None, None]
    x = np.arange(c.shape[1])[None, :, None]
    blobs = c - 0.15 * ((np.sin(2 * np.pi * x / 40) > 0.6) & (np.sin(2 * np.pi * y / 60) > 0)).astype(np.float32)
    clean, blotchy = measure([c, c]), measure([blobs, blobs])
    assert clean["blotches"] < 0.5 and blotchy["blotches"] > 5 * max(clean["blotches"], 0.1)
    assert blotchy["blotches"] > blotchy["amplitude"]  # wide marks: mostly beyond the 9x9 marks' reach
