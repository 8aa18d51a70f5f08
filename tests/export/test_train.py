import json
import math
import warnings

import numpy as np
import pytest

pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from stylert.engine.errors import StyleRTError  # noqa: E402
from stylert.export.model import VAEConfig  # noqa: E402
from stylert.export.train import TrainConfig, train  # noqa: E402

from ..conftest import TINY, vgg_weights  # noqa: E402


def _images(folder, n=6, size=(80, 64)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    for i in range(n):  # smooth, learnable images: gradients with a little texture
        a = np.stack([(xx * (i + 1) + yy * 3) % 256, (yy * (i + 2)) % 256, np.full_like(xx, 40 * i)], -1)
        a = (a + rng.integers(0, 20, a.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"img{i}.png")
    return folder


def _cfg(tmp_path, data, **kw):
    base = dict(data=[str(data)], out=str(tmp_path / "run"), steps=60, batch=4, crop=32, lr=3e-3,
                checkpoint_every=30, kl_warmup=10, seed=0, model=VAEConfig(**TINY))
    return TrainConfig(**{**base, **kw})


def test_loss_falls_and_checkpoints_resume(tmp_path, capsys):
    data = _images(tmp_path / "data")
    summary = train(_cfg(tmp_path, data, holdout=["img5.png"]), progress=False)
    hist = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["history"]
    assert summary["steps"] == 60 and len(hist) == 2
    first_loss = hist[0]["train_loss"]
    assert hist[-1]["train_loss"] < first_loss, hist
    assert summary["heldout_psnr"] > 0 and summary["heldout"] == ["img5.png"]
    # Resume: a longer run picks up at step 60 from run/last instead of starting over, and
    # keeps the first run's history (a fresh run would recompute steps 30 and 60).
    capsys.readouterr()
    summary2 = train(_cfg(tmp_path, data, holdout=["img5.png"], steps=70), progress=False)
    assert "resumed from" in capsys.readouterr().out and summary2["steps"] == 70
    hist2 = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["history"]
    assert [h["step"] for h in hist2] == [30, 60, 70] and hist2[:2] == hist


def test_same_seed_same_result(tmp_path):
    data = _images(tmp_path / "data", n=3)
    a = train(_cfg(tmp_path / "a", data, steps=8, checkpoint_every=8), progress=False)
    b = train(_cfg(tmp_path / "b", data, steps=8, checkpoint_every=8), progress=False)
    assert a["train_loss"] == b["train_loss"]


def test_unreadable_images_are_skipped_with_a_warning(tmp_path):
    data = _images(tmp_path / "data", n=2)
    (data / "broken.jpg").write_bytes(b"not an image at all")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = train(_cfg(tmp_path, data, steps=2, checkpoint_every=2), progress=False)
    assert any("broken.jpg" in str(x.message) for x in w)
    assert s["skipped"] and s["skipped"][0].endswith("broken.jpg")


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StyleRTError, match="no images"):
        train(_cfg(tmp_path, tmp_path / "empty"), progress=False)
    with pytest.raises(StyleRTError, match="does not exist"):
        train(_cfg(tmp_path, tmp_path / "missing"), progress=False)


def test_init_starts_from_a_model_of_the_same_configuration_only(tmp_path, tiny_checkpoint, capsys):
    import torch

    from stylert.export.checkpoint import load_model
    from stylert.export.model import VAE
    from stylert.export.train import init_from

    m = VAE(VAEConfig(**TINY))
    init_from(m, tiny_checkpoint)
    src = load_model(tiny_checkpoint)[0].state_dict()
    assert all(torch.equal(v, src[k]) for k, v in m.state_dict().items())
    with pytest.raises(StyleRTError, match="another model configuration"):
        init_from(VAE(VAEConfig(**{**TINY, "latent_channels": 8})), tiny_checkpoint)
    data = _images(tmp_path / "data")
    train(_cfg(tmp_path, data, steps=2, checkpoint_every=1, init=str(tiny_checkpoint)), progress=False)
    assert "initialized from" in capsys.readouterr().out


@pytest.mark.parametrize("old_kw, new_kw", [({"rgb_film": False}, {}), ({}, {"style_kernels": 2}), ({}, {"style_norm": True}),
                                            ({"style_kernels": 2}, {"style_kernels": 2, "style_norm": True}),
                                            ({}, {"up_kernels": 2}), ({"style_kernels": 2}, {"style_kernels": 2, "up_kernels": 2})],
                         ids=["rgb_film", "style_filters", "style_norm", "filters_then_norm", "up_filters", "filters_then_up"])
def test_init_from_a_model_without_a_new_part_paints_as_before(tmp_path, old_kw, new_kw):
    """A model grown by the RGB output's FiLM, the style-chosen filters or the normalization
    blend (model 3 from model 2): the new head rows start at zero, so every style paints as before."""
    import torch

    from stylert.export.checkpoint import save_model
    from stylert.export.model import VAE
    from stylert.export.train import init_from

    torch.manual_seed(0)
    old = VAE(VAEConfig(**{**TINY, **old_kw})).eval()
    torch.nn.init.normal_(old.decoder.style.net[-1].weight, std=0.05)
    save_model(old, tmp_path / "old")
    new = VAE(VAEConfig(**{**TINY, **new_kw})).eval()
    init_from(new, tmp_path / "old")
    x, s = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        z, own = old.encoder.encode_with_style(x)
        d = old.encoder.encode_with_style(s)[1] - own
        assert torch.equal(new.decoder(z, d), old.decoder(z, d))
    save_model(new, tmp_path / "new")
    with pytest.raises(StyleRTError, match="another model configuration"):  # no way back: the rows would be lost
        init_from(VAE(VAEConfig(**{**TINY, **old_kw})), tmp_path / "new")


def test_init_from_drops_the_input_films_rows(tmp_path):
    """--no-input-film from a model with it (model 3 from model 2): every other row is copied by
    what it drives, so the new model paints as the old one with its input conv unmodulated;
    the way back (adding an input FiLM) is refused, since its rows would be made up."""
    import torch

    from stylert.export.checkpoint import save_model
    from stylert.export.model import VAE
    from stylert.export.train import init_from

    torch.manual_seed(0)
    old = VAE(VAEConfig(**TINY)).eval()
    torch.nn.init.normal_(old.decoder.style.net[-1].weight, std=0.05)
    save_model(old, tmp_path / "old")
    new = VAE(VAEConfig(**TINY, input_film=False)).eval()
    init_from(new, tmp_path / "old")
    x, s = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        z, own = old.encoder.encode_with_style(x)
        d = old.encoder.encode_with_style(s)[1] - own
        y = new.decoder(z, d)
        assert not torch.equal(y, old.decoder(z, d))
        old.decoder.style.net[-1].weight[old.cfg.head_rows()["film:inp"]] = 0
        assert torch.equal(y, old.decoder(z, d))
    save_model(new, tmp_path / "new")
    with pytest.raises(StyleRTError, match="another model configuration"):
        init_from(VAE(VAEConfig(**TINY)), tmp_path / "new")


def test_train_cli_turns_a_default_on_part_off():
    """A model field on by default (input_film) has a --no- option; one off by default a plain flag."""
    from stylert.engine.cli import build_parser

    p = build_parser()
    a = p.parse_args(["train", "data"])
    assert a.input_film is True and a.style_norm is False
    a = p.parse_args(["train", "data", "--no-input-film", "--style-norm"])
    assert a.input_film is False and a.style_norm is True


def test_precision_choice():
    import torch

    from stylert.export.train import use_bf16

    cpu = torch.device("cpu")
    assert use_bf16("fp32", cpu) is False and use_bf16("bf16", cpu) is True
    assert isinstance(use_bf16("auto", cpu), bool)
    with pytest.raises(StyleRTError, match="unknown training precision"):
        use_bf16("fp8", cpu)


def test_style_stage_trains_encoder_and_decoder_and_keeps_the_elbo(tmp_path, tiny_checkpoint):
    vgg_weights()
    import torch

    from stylert.export.checkpoint import load_model
    from stylert.export.style import colour_loss, gram_loss

    data = _images(tmp_path / "data")
    styles = _images(tmp_path / "styles", n=3, size=(48, 48))
    cfg = _cfg(tmp_path, data, stage="style", init=str(tiny_checkpoint), styles=[str(styles)], steps=4,
               checkpoint_every=2, batch=2, coarse_weight=1.0, detail_weight=1.0)
    train(cfg, progress=False)
    hist = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["history"]
    assert all({"style", "gram", "coarse", "colour", "content", "detail", "psnr", "kl"} <= set(h)
               and h["gram"] > 0 and h["coarse"] > 0 and h["detail"] > 0 for h in hist), hist
    before, after = load_model(tiny_checkpoint)[0].state_dict(), load_model(tmp_path / "run" / "final")[0].state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"encoder", "decoder"}  # end to end
    f = {t: torch.rand(2, 4, 6, 6) for t in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")}
    assert torch.allclose(gram_loss(f, f), torch.zeros(2))
    g = {t: v.flip(1) * 2 for t, v in f.items()}
    assert (gram_loss(g, f) > 0).all()
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(colour_loss(x, x), torch.zeros(2), atol=1e-6) and (colour_loss(x * 0.5, x) > 0).all()


def test_held_out_names_match_files_folders_and_path_tails(tmp_path):
    from pathlib import Path

    from stylert.export.train import held_out

    f = Path("/d/paintings/monet/00465.jpg")
    assert held_out(f, {"00465.jpg"}) and held_out(f, {"monet"}) and held_out(f, {"monet/00465.jpg"})
    assert not held_out(f, {"00466.jpg"}) and not held_out(f, {"vangogh/00465.jpg"}) and not held_out(f, {"mon"})


def test_procedural_textures_are_repeatable_varied_and_join_the_style_stage(tmp_path, tiny_checkpoint, capsys):
    vgg_weights()
    from stylert.export.textures import KINDS, textures

    a, b = textures(len(KINDS), seed=3, size=64), textures(len(KINDS), seed=3, size=64)
    assert all(x.shape == (64, 64, 3) and x.dtype == np.uint8 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # the same seed, the same images
    assert all(x.std() > 1 for x in a)  # every kind draws a pattern, not a flat colour
    assert not np.array_equal(a[0], textures(1, seed=4, size=64)[0])
    palette = [np.full((8, 8, 3), (200, 10, 10), np.uint8)]  # colours come from the paintings
    red = textures(3, seed=0, size=64, source=palette)
    assert all(x[..., 0].mean() > x[..., 2].mean() + 50 for x in red)

    data = _images(tmp_path / "data")
    styles = _images(tmp_path / "styles", n=2, size=(48, 48))
    cfg = _cfg(tmp_path, data, stage="style", init=str(tiny_checkpoint), styles=[str(styles)], steps=2,
               checkpoint_every=2, batch=2, textures=6, texture_share=0.5)
    train(cfg, progress=False)
    assert "generated 6 procedural style images" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["train"]
    assert saved["textures"] == 6 and saved["texture_share"] == 0.5  # recorded in the lineage
    with pytest.raises(StyleRTError, match="texture-share"):
        train(_cfg(tmp_path, data, stage="style", init=str(tiny_checkpoint), styles=[str(styles)], steps=1,
                   out=str(tmp_path / "bad"), textures=2, texture_share=1.5), progress=False)


def test_style_jitter_turns_the_hue_and_keeps_light_and_dark(tmp_path, tiny_checkpoint):
    import random

    from stylert.export.train import ImagePool, recolour

    rng = np.random.default_rng(0)
    c = (rng.random((16, 16, 3)) * 200 + 20).astype(np.uint8)
    np.testing.assert_array_equal(recolour(c, 0.0, 1.0), c)  # no turn, no change
    lum = lambda a: a.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # noqa: E731
    turned = recolour(c, 2.0, 1.0)
    assert np.abs(turned.astype(int) - c).mean() > 20  # the colours moved ...
    assert np.abs(lum(turned) - lum(c)).mean() < 6  # ... the strokes' light and dark did not
    grey = recolour(c, 0.0, 0.0)
    assert np.abs(grey.astype(int).max(-1) - grey.astype(int).min(-1)).max() <= 1  # saturation 0: grey

    data = _images(tmp_path / "data", n=3)
    pool = ImagePool(sorted(data.iterdir()), 32)
    plain = pool.batch(random.Random(5), 4, 32, 0.4, rot90=True)
    assert np.array_equal(plain, pool.batch(random.Random(5), 4, 32, 0.4, rot90=True, jitter=0.0))  # old runs repeat
    assert not np.array_equal(plain, pool.batch(random.Random(5), 4, 32, 0.4, rot90=True, jitter=1.0))
    with pytest.raises(StyleRTError, match="style-jitter"):
        train(_cfg(tmp_path, data, stage="style", init=str(tiny_checkpoint), styles=[str(data)], steps=1,
                   style_jitter=2.0), progress=False)


def test_stop_after_gives_the_model_a_longer_run_holds_at_that_step(tmp_path, monkeypatch):
    import torch

    import stylert.export.train as tr
    from stylert.export.checkpoint import load_model

    data = _images(tmp_path / "data", n=3)
    seen = {}
    save = tr._save_state

    def keep(folder, model, opt, step, cfg, history, **kw):  # what the long run holds at each checkpoint
        seen[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        save(folder, model, opt, step, cfg, history, **kw)

    monkeypatch.setattr(tr, "_save_state", keep)
    train(_cfg(tmp_path, data, out=str(tmp_path / "long"), steps=12, checkpoint_every=6), progress=False)
    stopped = train(_cfg(tmp_path, data, out=str(tmp_path / "short"), steps=12, checkpoint_every=6, stop_after=6),
                    progress=False)
    assert stopped["steps"] == 6
    short = load_model(tmp_path / "short" / "final")[0].state_dict()
    assert all(torch.equal(short[k], seen[6][k]) for k in short)  # the learning rate followed --steps 12
    assert not all(torch.equal(short[k], seen[12][k]) for k in short)
    with pytest.raises(StyleRTError, match="stop-after"):
        train(_cfg(tmp_path, data, out=str(tmp_path / "bad"), stop_after=0), progress=False)


def test_distill_starts_from_the_teacher_and_moves_only_the_decoder(tmp_path, tiny_checkpoint):
    vgg_weights()
    import torch

    from stylert.export.checkpoint import load_model
    from stylert.export.distill import init_student
    from stylert.export.model import VAE

    teacher = load_model(tiny_checkpoint)[0].eval()
    x, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z, own = teacher.encoder.encode_with_style(x)
        d = teacher.encoder.encode_with_style(s)[1] - own
        # a student of the teacher's own design starts as the teacher, FiLM rows and all
        same = VAE(teacher.cfg).eval()
        init_student(same, teacher)
        assert torch.equal(same.decoder(z, d), teacher.decoder(z, d))
        # a leaner one keeps the block of the nearest dilation and that block's FiLM rows
        lean = VAE(VAEConfig(**{**TINY, "dec_dilations": (2,), "dec_head": "shuffle"}))
        init_student(lean, teacher)
        assert torch.equal(lean.decoder.blocks[0][1].weight, teacher.decoder.blocks[1][1].weight)
        rows = teacher.decoder.style.net[2].weight
        assert torch.equal(lean.decoder.style.net[2].weight[:2 * 8], rows[:2 * 8])  # inp
        assert torch.equal(lean.decoder.style.net[2].weight[2 * 8 : 6 * 8], rows[6 * 8 : 10 * 8])  # block2
        assert not any(p.requires_grad for p in lean.encoder.parameters())
        back = VAE(VAEConfig(**TINY))  # and the other way: a conv head from a shuffle teacher
        init_student(back, lean)
        assert torch.equal(back.decoder.up[0].weight, lean.decoder.up[0].weight)
        with pytest.raises(StyleRTError, match="widths"):
            init_student(VAE(VAEConfig(**{**TINY, "widths": (4, 8, 16)})), teacher)

    data = _images(tmp_path / "data")
    styles = _images(tmp_path / "styles", n=3, size=(48, 48))
    cfg = _cfg(tmp_path, data, stage="distill", init=str(tiny_checkpoint), styles=[str(styles)], steps=4,
               checkpoint_every=2, batch=4, model=VAEConfig(**{**TINY, "dec_dilations": (2,), "dec_head": "shuffle"}))
    train(cfg, progress=False)
    hist = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["history"]
    assert all({"pixels", "features", "texture", "psnr_t"} <= set(h) and h["pixels"] > 0 for h in hist), hist
    student = load_model(tmp_path / "run" / "final")[0].state_dict()
    before = teacher.state_dict()
    assert all(torch.equal(student[k], v) for k, v in before.items() if k.startswith("encoder."))
    assert not torch.equal(student["decoder.inp.weight"], before["decoder.inp.weight"])
    with pytest.raises(StyleRTError, match="learns from a trained model"):
        train(_cfg(tmp_path, data, stage="distill", styles=[str(styles)], out=str(tmp_path / "r2")), progress=False)


def test_patch_loss_finds_the_nearest_style_patch():
    import torch

    from stylert.export.style import PATCH_TAPS, patch_loss

    torch.manual_seed(0)
    f = {t: torch.rand(2, 4, 8, 8) for t, _ in PATCH_TAPS}
    assert torch.allclose(patch_loss(f, f), torch.zeros(2), atol=1e-6)  # every patch is its own nearest
    moved = {t: v.roll(3, dims=3) for t, v in f.items()}  # the same patches elsewhere: nearly free
    other = {t: torch.rand(2, 4, 8, 8) for t in f}
    assert (patch_loss(moved, f) < patch_loss(other, f)).all()


def test_layout_loss_sees_blotches_not_the_palette_or_fine_strokes():
    """The layout term: blotches 10-30 px across that the photo lacks cost; the same picture in
    another palette and contrast, or under 2-px strokes, costs little."""
    import torch

    from stylert.export.style import layout_loss

    torch.manual_seed(0)
    y, x = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    photo = (0.5 + 0.3 * torch.sin(x / 15) * torch.cos(y / 20)).expand(1, 3, 96, 96).contiguous()
    recoloured = (photo * torch.tensor([0.5, 0.8, 1.2])[None, :, None, None] + 0.1).clamp(0, 1)
    stroked = (photo + 0.08 * torch.sign(torch.sin(x * 3.1))).clamp(0, 1)
    blotched = (photo - 0.25 * ((torch.sin(x / 4) > 0.5) & (torch.cos(y / 5) > 0.3)).float()).clamp(0, 1)
    same, rec, strk, blot = (layout_loss(v, photo).item() for v in (photo, recoloured, stroked, blotched))
    assert same < 1e-6 and max(rec, strk) < 0.2 * blot, (rec, strk, blot)


def test_distinct_loss_reads_shared_marks_not_the_contents_edges():
    """The distinct term: the same marks added by two paintings (or the same marks inverted)
    read near 1, marks of their own near 0; the content's own edges, kept by both, and the
    marks' strength do not count."""
    import torch

    from stylert.export.style import distinct_loss

    torch.manual_seed(0)
    y, x = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    photo = (0.5 + 0.3 * torch.sin(x / 6) * torch.cos(y / 9)).expand(1, 3, 96, 96)
    hatch = 0.05 * torch.sin((x + y) * 1.3)
    a, b = (0.03 * torch.randn(1, 1, 96, 96) for _ in range(2))
    def pair(m1, m2, k=1.0):  # two outputs of one content, with the marks m1 and m2 (x k: a stronger stylizer)
        return torch.cat([k * photo + m1, k * photo + m2]), photo.repeat(2, 1, 1, 1)
    shared, inverted, stronger = distinct_loss(*pair(hatch, hatch)), distinct_loss(*pair(hatch, -hatch)), \
        distinct_loss(*pair(hatch, 3 * hatch, 1.4))
    own, kept = distinct_loss(*pair(a, b)), distinct_loss(*pair(0 * a, 0 * a))
    assert min(shared.item(), inverted.item(), stronger.item()) > 0.9, (shared, inverted, stronger)
    assert own.item() < 0.01 and kept.item() < 0.01, (own, kept)
    fine, own_coarse = 0.05 * torch.sin(x * 2 * math.pi / 5), 0.05 * torch.sin(y / 4)  # 5-px period shared; 25-px not
    both = distinct_loss(*pair(fine, fine + own_coarse)), distinct_loss(*pair(fine, fine + own_coarse), finest=5)
    assert both[0].item() > 0.3 and both[1].item() < 0.01, both  # finest=5 reads only the marks of 5 px and more
    flat = torch.ones(2, 3, 96, 96, requires_grad=True)  # an output clipped white: no marks, finite gradient
    distinct_loss(flat, photo.repeat(2, 1, 1, 1)).sum().backward()
    assert torch.isfinite(flat.grad).all()


def test_distinct_weight_pairs_the_contents(tmp_path):
    import random

    import torch

    from stylert.export.config import TrainConfig
    from stylert.export.train import ImagePool, _pairs, check_config

    pool = ImagePool(sorted(_images(tmp_path / "data").glob("*.png")), 32)
    cfg = TrainConfig(batch=6, crop=32, distinct_weight=1.0)
    xc, xs = _pairs(pool, pool, random.Random(0), cfg, torch.device("cpu"))
    assert torch.equal(xc[:3], xc[3:]) and not torch.equal(xs[:3], xs[3:])
    cfg.batch = 5
    with pytest.raises(StyleRTError, match="even --batch"):
        check_config(cfg)


def test_skies_join_the_content_crops_at_their_share(tmp_path, tiny_checkpoint, capsys):
    import random

    from stylert.export.textures import skies
    from stylert.export.train import ImagePool, check_config

    a, b = skies(3, seed=1, size=64), skies(3, seed=1, size=64)
    assert all((x == y).all() for x, y in zip(a, b)) and a[0].shape == (64, 64, 3)
    assert all(np.abs(np.diff(s.astype(float), axis=1)).mean() < 8 for s in a)  # flat: grain, no pattern
    pool = ImagePool(sorted(_images(tmp_path / "data").glob("*.png")), 32)
    pool.add([np.zeros((64, 64, 3), np.uint8)], 0.25)
    pool.add([np.full((64, 64, 3), 255, np.uint8)], 0.5)
    x = pool.batch(random.Random(0), 400, 32, 1.0)
    flat_black, flat_white = (x.amax((1, 2, 3)) == 0).float().mean(), (x.amin((1, 2, 3)) == 1).float().mean()
    assert abs(flat_black - 0.25) < 0.07 and abs(flat_white - 0.5) < 0.07
    with pytest.raises(StyleRTError, match="add up to more"):
        check_config(TrainConfig(data=["x"], content_paintings=0.6, sky_share=0.5))


def test_the_drip_probe_is_logged_at_every_checkpoint_of_a_style_run(tmp_path, tiny_checkpoint):
    vgg_weights()
    import torch

    from stylert.export.checkpoint import load_model
    from stylert.export.train import center_crops, probe_marks

    data = _images(tmp_path / "data")
    styles = _images(tmp_path / "styles", n=3, size=(48, 48))
    held = _images(tmp_path / "held_paintings", n=3, size=(64, 48))
    cfg = _cfg(tmp_path, data, stage="style", init=str(tiny_checkpoint), styles=[str(styles), str(held)], steps=2,
               checkpoint_every=1, batch=2, holdout=["held_paintings"], eval_size=64)
    train(cfg, progress=False)
    hist = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["history"]
    assert len(hist) == 2 and all(-1 <= h["probe_correlation"] <= 1 and h["probe_periodicity"] >= 0 and h["probe_blotches"] >= 0 for h in hist), hist
    # a decoder the style cannot reach (zero head) paints the content's own marks, only
    # rescaled by each painting's statistics: the same marks for every painting
    model = load_model(tiny_checkpoint)[0]
    crops = center_crops(sorted(held.glob("*.png")), 64)
    assert probe_marks(model, crops, torch.device("cpu"))["probe_correlation"] < 0.9
    torch.nn.init.zeros_(model.decoder.style.net[-1].weight)
    assert probe_marks(model, crops, torch.device("cpu"))["probe_correlation"] > 0.9
