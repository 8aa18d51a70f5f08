"""Engine: loading and its reasons, sizes kept, batching, concurrency, tiling, styles."""

import threading

import numpy as np
import pytest
from PIL import Image

from stylert.engine import Engine, StyleCode, mixing
from stylert.engine.errors import StyleRTError
from stylert.engine.runtime import postprocess, preprocess


@pytest.fixture(scope="module")
def eng(tiny_export):
    e = Engine.load(tiny_export, backend="auto", batch_size=2)
    yield e
    e.close()


def test_load_reports_choice_and_reason(eng):
    assert eng.info["backend"] == "onnxruntime" and eng.info["precision"] == "fp32"
    assert eng.info["reason"].startswith("auto:")


def test_load_errors(tiny_export, tmp_path):
    with pytest.raises(StyleRTError, match="does not exist"):
        Engine.load(tmp_path / "nope")
    with pytest.raises(StyleRTError, match="not a StyleRT model folder"):
        Engine.load(tmp_path)
    with pytest.raises(StyleRTError, match="build-engine"):
        Engine.load(tiny_export, backend="tensorrt")
    with pytest.raises(StyleRTError, match="build-engine"):
        Engine.load(tiny_export, backend="onnxruntime", precision="int8")
    with pytest.raises(StyleRTError, match="unknown backend"):
        Engine.load(tiny_export, backend="tvm")


def test_checkpoint_folder_runs_on_torch(tiny_checkpoint, eng, rng):
    pytest.importorskip("torch")
    t = Engine.load(tiny_checkpoint)
    assert t.info["backend"] == "torch" and "checkpoint" in t.info["reason"]
    x = rng.random((1, 3, 32, 40), dtype=np.float32)
    assert np.abs(t.encode(x)[0] - eng.encode(x)[0]).max() < 1e-4


@pytest.mark.parametrize("h,w", [(1, 1), (37, 53), (64, 64), (9, 250)])
def test_output_has_input_size_and_kind(eng, rng, h, w):
    style = rng.random((40, 40, 3)).astype(np.float32)
    u8 = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    out = eng.stylize(u8, style)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    pil = eng.stylize(Image.fromarray(u8), style)
    assert isinstance(pil, Image.Image) and pil.size == (w, h)
    np.testing.assert_array_equal(np.asarray(pil), out)
    f = eng.stylize(u8.astype(np.float32) / 255, style)
    assert f.shape == (h, w, 3) and f.dtype == np.float32


def test_strength_zero_is_reconstruction(eng, rng):
    x = rng.random((1, 3, 32, 48), dtype=np.float32)
    code = StyleCode.from_codes(eng.encode(rng.random((1, 3, 32, 32), dtype=np.float32))[1])  # another image's
    np.testing.assert_allclose(eng.stylize_batch(x, code, 0.0), eng.decode(eng.encode(x)[0]), atol=1e-6)


def test_margin_is_off_by_default_and_a_mirrored_border_cropped_off(tiny_export, rng):
    from stylert.engine import Engine
    from stylert.engine.errors import StyleRTError

    x = rng.random((40, 56, 3), dtype=np.float32)
    with Engine.load(tiny_export, margin=16, palette=False) as e16:  # the network alone, as stylize_batch gives it
        code = e16.encode_style(rng.random((32, 32, 3)).astype(np.float32))
        padded = np.pad(x.transpose(2, 0, 1), ((0, 0), (16, 16), (16, 16)), mode="reflect")[None]
        want = e16.stylize_batch(padded, code)[0, :, 16:56, 16:72].transpose(1, 2, 0)
        np.testing.assert_allclose(e16.stylize(x, code), want, atol=1e-6)
    with Engine.load(tiny_export) as e0:
        assert e0.margin == 0  # the model pads by replication inside: no frame to crop
        one = rng.random((1, 1, 3), dtype=np.float32)
        assert e0.stylize(one, code).shape == (1, 1, 3)
    with Engine.load(tiny_export, margin=32) as e32:
        assert e32.stylize(rng.random((1, 1, 3), dtype=np.float32), code).shape == (1, 1, 3)  # edge-padded
    with pytest.raises(StyleRTError, match="margin"):
        Engine.load(tiny_export, margin=-8)


def test_lists_of_mixed_sizes_are_batched(eng, rng):
    imgs = [(rng.random((s, s + 8, 3)) * 255).astype(np.uint8) for s in (32, 40, 32, 32, 32, 40)]
    code = eng.encode_style(rng.random((32, 32, 3)).astype(np.float32))
    outs = eng.stylize(imgs, code)
    assert [o.shape for o in outs] == [i.shape for i in imgs]
    for i, img in enumerate(imgs):  # batched == one at a time
        np.testing.assert_array_equal(outs[i], eng.stylize(img, code))


def test_many_threads_get_the_same_results_as_one(tiny_export, rng):
    pytest.importorskip("torch")
    imgs = [(rng.random((32, 40, 3)) * 255).astype(np.uint8) for _ in range(4)]
    for backend in ("onnxruntime", "torch"):
        e = Engine.load(tiny_export, backend=backend)
        code = e.encode_style(imgs[0])
        ref = [e.stylize(im, code, strength=0.8) for im in imgs]
        got, errors = {}, []

        def work(k):
            try:
                for j in range(3):
                    i = (k + j) % len(imgs)
                    got[(k, j)] = (i, e.stylize(imgs[i], code, strength=0.8))
            except Exception as ex:  # surfaced below
                errors.append(ex)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors and len(got) == 24
        for i, out in got.values():
            np.testing.assert_array_equal(out, ref[i])
        e.close()


def test_tiling_matches_whole_image(tiny_export, eng, rng):
    img = (rng.random((200, 264, 3)) * 255).astype(np.uint8)
    tiled = Engine.load(tiny_export, tile=96, overlap=32, palette=False)  # the network's own output
    eng = Engine.load(tiny_export, palette=False)
    code = eng.encode_style(img[:64, :64])
    x, _ = preprocess([img])
    (z_whole, s_whole), (z_tiled, s_tiled) = eng.encode(x), tiled.encode(x)
    assert np.abs(z_whole - z_tiled).max() < 1e-3
    # the tiled engine's own code comes from a copy scaled to one tile: close, not equal
    assert np.abs(s_whole - s_tiled).max() < 0.1 * (1 + np.abs(s_whole).max())
    off = s_whole[::-1] - s_whole  # a style offset, so the style head runs in every tile
    assert np.abs(eng.decode(z_whole, off) - tiled.decode(z_whole, off)).max() < 1e-3
    a, b = eng.stylize(img, code).astype(float), tiled.stylize(img, code).astype(float)
    # the tiled engine's own code (from a scaled copy) moves the offset, which the tiny model's
    # head turns into a global colour shift (RGB FiLM): the picture itself must agree
    assert np.abs((a - a.mean((0, 1))) - (b - b.mean((0, 1)))).max() <= 8


def test_max_side_policy_keeps_the_size(tiny_export, rng):
    e = Engine.load(tiny_export, max_side=64)
    img = (rng.random((100, 150, 3)) * 255).astype(np.uint8)
    assert e.stylize(img, img).shape == (100, 150, 3)
    assert Engine.load(tiny_export).max_side == 1024  # the default working resolution


def test_working_resolution_is_brought_back_with_sharp_edges(tiny_export):
    """A large image is stylized at max_side and upsampled guided by itself: its edges stay
    where they are and as steep as in the input, which plain upscaling would blur."""
    from stylert.engine.images import guided_upsample

    img = np.zeros((256, 384, 3), np.float32)
    img[:, 190:] = 0.9  # one vertical edge, 6 px off the 1/4 grid
    img[100:140, 40:120] = 0.5
    e = Engine.load(tiny_export, max_side=64, palette=False)  # the tiny model's palette map would scale the step
    code = e.encode_style(np.random.default_rng(0).random((32, 32, 3)).astype(np.float32))
    out = e.stylize(img, code)
    assert out.shape == img.shape
    row = out[200].mean(1)
    jump = np.abs(np.diff(row))
    assert jump.argmax() == 189 and jump.max() > 4 * np.sort(jump)[-2]  # one sharp step, in place
    # the filter alone: the identity when the small image is its own stylization
    g = np.random.default_rng(1).random((3, 40, 60)).astype(np.float32)
    small = g.reshape(3, 20, 2, 30, 2).mean((2, 4))
    assert np.abs(guided_upsample(small, small, g, eps=1e-6) - g).mean() < 0.02


def test_preprocess_postprocess_roundtrip(rng):
    imgs = [(rng.random((21, 30, 3)) * 255).astype(np.uint8) for _ in range(2)]
    x, sizes = preprocess(imgs)
    assert x.shape == (2, 3, 24, 32) and sizes == [(21, 30)] * 2
    back = postprocess(x, sizes, "uint8")
    for a, b in zip(back, imgs):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(StyleRTError, match="several sizes"):
        preprocess([imgs[0], imgs[0][:10]])


def test_weighted_styles_masks_and_colour(eng, rng):
    a = (np.ones((32, 32, 3)) * [0.9, 0.1, 0.1]).astype(np.float32) + rng.random((32, 32, 3)).astype(np.float32) * 0.1
    b = (np.ones((32, 32, 3)) * [0.1, 0.1, 0.9]).astype(np.float32) + rng.random((32, 32, 3)).astype(np.float32) * 0.1
    content = rng.random((48, 64, 3)).astype(np.float32)
    ca, cb = eng.encode_style(a), eng.encode_style(b)
    mixed = eng.stylize(content, [a, b], weights=[0.5, 0.5])
    pal = mixing.mix_palettes([ca.palette, cb.palette], np.array([0.5, 0.5]))
    np.testing.assert_allclose(mixed, eng.stylize(content, StyleCode((ca.mean + cb.mean) / 2, (ca.std + cb.std) / 2,
                                                                     rgb_mean=pal[0], rgb_cov=pal[1])), atol=1e-5)
    left = np.zeros((48, 64)); left[:, :32] = 1
    masked = eng.stylize(content, [a, b], mask=[left, 1 - left])
    assert masked.shape == content.shape
    kept = eng.stylize(content, [a], mask=[np.zeros((48, 64))])
    np.testing.assert_allclose(kept, eng.stylize(content, a, strength=0.0), atol=1e-5)
    pc = eng.stylize(content, a, preserve_color=True)
    assert pc.shape == content.shape
    with pytest.raises(StyleRTError, match="style images"):
        eng.stylize(content, ca, preserve_color=True)


def test_outputs_take_the_styles_palette_and_masks_give_each_region_its_own(tiny_export, eng, rng):
    from stylert.engine.runtime import Engine

    red = (np.ones((32, 32, 3)) * [0.8, 0.2, 0.1] + rng.random((32, 32, 3)) * 0.2).astype(np.float32)
    blue = (np.ones((32, 32, 3)) * [0.1, 0.2, 0.7] + rng.random((32, 32, 3)) * 0.2).astype(np.float32)
    content = rng.random((48, 64, 3)).astype(np.float32) * 0.5 + 0.25
    code = eng.encode_style(red)
    np.testing.assert_allclose(code.rgb_mean, red.reshape(-1, 3).mean(0), atol=2e-3)  # the style image's (resized) pixels
    out = eng.stylize(content, code)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), code.rgb_mean, atol=0.03)
    # (the tiny model paints nearly flat images: their contrast is not stretched, mixing.FLAT)
    raw = Engine.load(tiny_export, palette=False)
    assert raw.info["palette"] is False
    decoder_only = raw.stylize(content, code)
    assert np.abs(decoder_only - out).mean() > 0.01
    half = eng.stylize(content, code, strength=0.5)  # the palette step follows the strength too
    assert np.abs(half.reshape(-1, 3).mean(0) - code.rgb_mean).max() > 0.01
    # a code without a palette (saved before palettes existed) keeps the decoder's colours
    np.testing.assert_allclose(eng.stylize(content, StyleCode(code.mean, code.std, model=code.model)), decoder_only, atol=1e-6)
    left = np.zeros((48, 64)); left[:, :32] = 1
    masked = eng.stylize(content, [red, blue], mask=[left, 1 - left])
    assert masked[:, :32, 0].mean() > masked[:, :32, 2].mean() + 0.3 and masked[:, 32:, 2].mean() > masked[:, 32:, 0].mean() + 0.3


def test_stylecode_from_another_model_is_refused(eng):
    c = eng.contract.style_size // 2
    with pytest.raises(StyleRTError, match="different model"):
        eng.stylize(np.zeros((16, 16, 3), np.uint8), StyleCode(np.zeros(c), np.ones(c), model="0" * 64))
    with pytest.raises(StyleRTError, match="channels"):
        eng.stylize(np.zeros((16, 16, 3), np.uint8), StyleCode(np.zeros(c + 1), np.ones(c + 1)))


def test_interpolation_endpoints(eng, rng):
    a = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    b = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    x, _ = preprocess([a])
    for method in ("lerp", "slerp"):
        outs = eng.interpolate(a, b, [0.0, 0.5, 1.0], method=method)
        assert len(outs) == 3
        np.testing.assert_array_equal(outs[0], postprocess(eng.decode(eng.encode(x)[0]), [(32, 32)], "uint8")[0])


def test_style_code_does_not_depend_on_the_style_files_resolution(tiny_export):
    # a smooth pattern, as a 96-px thumbnail and as a 384-px "scan" of the same picture
    yy, xx = np.mgrid[0:384, 0:384] / 384.0
    big = np.stack([0.5 + 0.4 * np.sin(12 * xx + 5 * yy), 0.5 + 0.4 * np.cos(9 * yy), 0.3 + 0.2 * xx], -1).astype(np.float32)
    small = np.asarray(Image.fromarray((big * 255).astype(np.uint8)).resize((96, 96), Image.LANCZOS), np.float32) / 255.0
    big = np.round(big * 255) / 255.0

    def gap(e):
        a, b = e.encode_style(big), e.encode_style(small)
        return float(np.abs(np.concatenate([a.mean - b.mean, a.std - b.std])).mean())

    with Engine.load(tiny_export) as scaled, Engine.load(tiny_export, style_side=None) as as_is:
        assert scaled.info["style_side"] == 512 and as_is.info["style_side"] is None
        assert gap(scaled) < 0.25 * gap(as_is)  # both seen at 512 px: nearly one code
        content = np.full((40, 40, 3), 0.5, np.float32)
        np.testing.assert_allclose(scaled.stylize(content, big), scaled.stylize(content, scaled.encode_style(big)), atol=1e-5)
    for bad in (0, 4, 5000, 1.5):
        with pytest.raises(StyleRTError, match="style_side"):
            Engine.load(tiny_export, style_side=bad)


def test_one_plan_per_image(tiny_export):
    """Engine.plan decides the working size, tiles, the way back and the palette once; the
    video path follows the same plan as stylize (a still clip's frame is the photo's picture)."""
    import numpy as np

    from stylert.engine import Engine
    from stylert.engine.video import stylize_frames

    with Engine.load(tiny_export, backend="onnxruntime", max_side=48, tile=64, overlap=8) as eng:
        p = eng.plan((90, 120))
        assert p.work == (36, 48) and p.upsampled and not p.tiled and p.palette
        assert "painted at 48x36, upsampled edge-aware to 120x90" in p.describe()
        assert not eng.plan((30, 40)).upsampled and eng.plan((30, 40)).work == (30, 40)
        frame = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
        style = eng.encode_style(np.random.default_rng(1).random((32, 32, 3)).astype(np.float32))
        still = next(iter(stylize_frames(eng, [frame], style, temporal=0.0)))
        photo = np.asarray(eng.stylize(frame, style))
        assert still.shape == photo.shape == (90, 120, 3) and np.abs(still.astype(int) - photo).max() <= 1
    with Engine.load(tiny_export, backend="onnxruntime", max_side=None, tile=64, overlap=8) as eng:
        assert eng.plan((90, 120)).tiled and not eng.plan((90, 120)).upsampled
