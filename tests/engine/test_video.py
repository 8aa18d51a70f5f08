"""Video: clips made here with PyAV (moving shapes, noise, a cut, an audio tone), stylized
through the CLI and the API; frame count, rate, size, duration and audio kept; steadiness;
nothing half-written under the final name; bad files fail alone."""

import os
from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av", reason="video needs PyAV: pip install 'stylert[video]'")

from stylert.engine.cli import main  # noqa: E402
from stylert.engine.errors import StyleRTError  # noqa: E402
from stylert.engine.runtime import Engine  # noqa: E402
from stylert.engine.video import Flicker, stylize_frames, stylize_video  # noqa: E402


def _frames(n=24, size=(96, 64), seed=0, cut_at=None):
    rng = np.random.default_rng(seed)
    for i in range(n):
        late = cut_at is not None and i >= cut_at
        img = np.full((size[1], size[0], 3), (200, 180, 60) if late else (40, 90, 160), np.uint8)
        x = 5 + 2 * i
        img[20:40, x:x + 20] = (230, 230, 230)  # a square moving right
        yield np.clip(img + rng.integers(0, 12, img.shape), 0, 255).astype(np.uint8)


def make_clip(path, n=24, size=(96, 64), fps=12, audio=True, codec="libx264", cut_at=12, rotation=None, pts=None,
              options=None):
    """A clip of `_frames`; `rotation`: a display rotation (and a white strip on the stored
    frames' left to see where it went); `pts`: each frame's timestamp in ms (variable rate)."""
    out = av.open(str(path), "w", options=options or {})
    v = out.add_stream(codec, rate=fps)
    v.width, v.height = size
    v.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
    if pts is not None:
        v.codec_context.time_base = v.time_base = Fraction(1, 1000)
    if rotation:
        v.set_display_rotation(rotation)
    if audio:
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
    for i, img in enumerate(_frames(n, size, cut_at=cut_at)):
        if rotation:
            img[:, :6] = 255
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        if pts is not None:
            f.pts, f.time_base = pts[i], Fraction(1, 1000)
        for p in v.encode(f):
            out.mux(p)
    for p in v.encode():
        out.mux(p)
    if audio:
        t = np.arange(int(16000 * n / fps)) / 16000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for i in range(0, tone.shape[1], 1024):
            fr = av.AudioFrame.from_ndarray(tone[:, i:i + 1024], format="fltp", layout="mono")
            fr.sample_rate = 16000
            for p in a.encode(fr):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    out.close()
    return path


def _describe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        d = {"rate": v.average_rate, "size": (v.codec_context.width, v.codec_context.height),
             "seconds": float(v.duration * v.time_base) if v.duration else None,
             "audio": [(s.codec_context.name, s.sample_rate) for s in c.streams.audio]}
        d["frames"] = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        d["audio_bytes"] = b"".join(bytes(p) for p in c.demux(audio=0)) if d["audio"] else b""
    return d


@pytest.fixture(scope="module")
def eng(tiny_export):
    e = Engine.load(tiny_export)
    yield e
    e.close()


@pytest.fixture(scope="module")
def raw(tiny_export):
    """Without the palette step: the tiny model paints nearly flat frames, whose palette map
    would hide the texture these tests follow."""
    e = Engine.load(tiny_export, palette=False)
    yield e
    e.close()


def test_cli_stylizes_a_clip_keeping_frames_rate_size_and_audio(tmp_path, tiny_export):
    (tmp_path / "in").mkdir()
    src = make_clip(tmp_path / "in" / "clip.mp4")
    style = tmp_path / "style.png"
    from PIL import Image

    Image.fromarray(next(_frames(1, (48, 48), seed=3))).save(style)
    assert main(["stylize", str(src), "--style", str(style), "--model", str(tiny_export), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    got, want = _describe(tmp_path / "out" / "clip.mp4"), _describe(src)
    assert got["frames"] == want["frames"] == 24 and got["rate"] == want["rate"] and got["size"] == want["size"]
    assert got["seconds"] == pytest.approx(want["seconds"], abs=0.1)
    assert got["audio"] == want["audio"] and got["audio_bytes"] == want["audio_bytes"]  # copied unchanged
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    # a second run keeps the file unless --overwrite
    before = (tmp_path / "out" / "clip.mp4").read_bytes()
    assert main(["stylize", str(src), "--style", str(style), "--model", str(tiny_export), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert (tmp_path / "out" / "clip.mp4").read_bytes() == before


@pytest.mark.parametrize("suffix,codec", [(".webm", "libvpx-vp9"), (".gif", "gif")])
def test_other_containers(tmp_path, eng, suffix, codec):
    src = make_clip(tmp_path / f"c{suffix}", n=8, audio=False, codec=codec)
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    r = stylize_video(eng, src, tmp_path / f"o{suffix}", style)
    assert r["frames"] == 8 and _describe(tmp_path / f"o{suffix}")["frames"] == 8


def test_smoothing_steadies_and_resets_at_the_cut(raw, eng):
    # with the palette step, the first frame is the per-image path's too
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    first = next(iter(stylize_frames(eng, _frames(cut_at=12), style, temporal=0.9)))
    np.testing.assert_array_equal(first, eng.stylize(next(_frames(1)), style))
    eng = raw
    f0, f9 = Flicker(), Flicker()
    a = list(stylize_frames(eng, _frames(cut_at=12), style, temporal=0.0, flicker=f0))
    b = list(stylize_frames(eng, _frames(cut_at=12), style, temporal=0.9, flicker=f9))
    assert len(a) == len(b) == 24 and a[0].shape == (64, 96, 3)
    assert f9.ratio < f0.ratio  # steadier
    # temporal 0 is exactly the per-image path
    one = eng.stylize(next(_frames(1)), style)
    np.testing.assert_array_equal(a[0], one)
    # after the cut the average starts over: the first frame of the new shot is its own
    c = list(stylize_frames(eng, list(_frames(cut_at=12))[12:], style, temporal=0.9))
    np.testing.assert_array_equal(b[12], c[0])


def test_interrupted_writes_leave_nothing_under_the_final_name(tmp_path, eng, monkeypatch):
    import stylert.engine.video as V

    src = make_clip(tmp_path / "c.mp4", n=16)
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    calls = {"n": 0}
    real = V.TemporalStylizer.__call__

    def boom(self, frames, flows=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, frames, flows)

    monkeypatch.setattr(V.TemporalStylizer, "__call__", boom)
    with pytest.raises(KeyboardInterrupt):
        stylize_video(eng, src, tmp_path / "out.mp4", style)
    assert sorted(os.listdir(tmp_path)) == ["c.mp4"]  # no output, no partial file


def test_bad_video_files_fail_alone_with_their_name(tmp_path, tiny_export, capsys):
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "good.mp4", n=6, audio=False)
    (tmp_path / "in" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    from PIL import Image

    Image.fromarray(next(_frames(1, (32, 32)))).save(tmp_path / "in" / "still.png")
    Image.fromarray(next(_frames(1, (48, 48), seed=3))).save(tmp_path / "style.png")
    rc = main(["stylize", str(tmp_path / "in"), "--style", str(tmp_path / "style.png"), "--model", str(tiny_export),
               "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "broken.mp4" in err and "could not be" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mp4", "still.png"]  # images and videos both
    with pytest.raises(StyleRTError, match="exists"):
        stylize_video(Engine.load(tiny_export), tmp_path / "in" / "good.mp4", tmp_path / "out" / "good.mp4",
                      Engine.load(tiny_export).encode_style(tmp_path / "style.png"))


def test_frame_sequences(tmp_path, tiny_export):
    from PIL import Image

    seq = tmp_path / "shot"
    seq.mkdir()
    for i, f in enumerate(_frames(10)):
        Image.fromarray(f).save(seq / f"frame_{i:04d}.png")
    Image.fromarray(next(_frames(1, (48, 48), seed=3))).save(tmp_path / "style.png")
    assert main(["stylize", str(seq), "--frames", "--style", str(tmp_path / "style.png"), "--model", str(tiny_export),
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "shot").iterdir()) == [f"frame_{i:04d}.png" for i in range(10)]


def test_still_regions_keep_their_texture_and_moving_ones_follow(raw):
    eng = raw
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    frames = list(_frames(n=12, cut_at=None))  # sensor noise everywhere, one square moving right
    a = list(stylize_frames(eng, frames, style, temporal=0.0))
    b = list(stylize_frames(eng, frames, style, temporal=0.9))
    still = (slice(45, 64), slice(0, 96))  # below the square's path: only noise changes there
    change = lambda xs, r: np.mean([np.abs(x[r].astype(float) - y[r].astype(float)).mean() for x, y in zip(xs, xs[1:])])
    assert change(b, still) < 0.5 * change(a, still)  # the noise no longer repaints the texture
    # where the square is, the output follows it: its last position is bright in both
    sq = (slice(22, 38), slice(5 + 2 * 11 + 3, 5 + 2 * 11 + 17))
    assert abs(b[-1][sq].mean() - a[-1][sq].mean()) < 12, (b[-1][sq].mean(), a[-1][sq].mean())


# ----------------------------------------------------------------------------- motion
cv2 = pytest.importorskip("cv2", reason="the optical flow needs OpenCV: pip install 'stylert[video]'")


def test_motion_finds_a_translation_and_distrusts_what_entered_the_frame():
    from stylert.engine.video import Motion

    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.integers(0, 255, (140, 200, 3)).astype(np.uint8), (5, 5), 0)
    prev, cur = big[20:100, 20:140], big[21:101, 24:144]  # the camera moved 4 px right, 1 down
    maps, reliable = Motion()(prev, cur)
    gy, gx = np.mgrid[0:80, 0:120]
    inner = (slice(10, 70), slice(10, 100))
    assert np.abs(maps[..., 0] - (gx + 4))[inner].mean() < 0.3 and np.abs(maps[..., 1] - (gy + 1))[inner].mean() < 0.3
    assert reliable[inner].mean() > 0.9 and reliable[:, -2:].mean() < 0.5  # the new strip on the right: not seen before


@pytest.fixture(scope="module")
def shipped():
    """The shipped model on ONNX Runtime: a tiny random model paints too little of its content
    to show a texture moving or a trail."""
    return Engine.load(backend="onnxruntime")


def test_texture_follows_a_pan_and_zoom(shipped):
    """The painted texture moves with the scene: the warped error (exact motion) of the default
    is well below frame by frame's, on a clip with a cut."""
    from stylert.bench.video import synthetic_clip, warped_error

    eng = shipped
    frames, motion = synthetic_clip("pan-zoom", n=12, size=(160, 96))
    style = eng.encode_style(next(_frames(1, (64, 64), seed=3)))
    steady = list(stylize_frames(eng, frames, style))
    each = list(stylize_frames(eng, frames, style, temporal=0.0))
    assert warped_error(frames, steady, motion) < 0.6 * warped_error(frames, each, motion)


def test_an_object_moving_over_a_still_background_leaves_no_trail(shipped):
    """Where the disc has uncovered the background, the output is the background's own
    stylization within a few frames: not the disc carried along (a ghost trail)."""
    from stylert.bench.video import synthetic_clip

    eng = shipped
    style = eng.encode_style(next(_frames(1, (64, 64), seed=3)))
    w, h, n = 160, 96, 20
    r = w // 8
    obj = list(stylize_frames(eng, synthetic_clip("object", n, (w, h))[0], style))
    still = list(stylize_frames(eng, synthetic_clip("still", n, (w, h))[0], style))
    yy, xx = np.mgrid[0:h, 0:w]
    # covered at frame 2, uncovered from frame 12 on: the disc left it 8 frames before the last
    was = (xx - (r + 5 * 2)) ** 2 + (yy - h // 2) ** 2 < (r - 2) ** 2
    region = was & ((xx - (r + 5 * 12)) ** 2 + (yy - h // 2) ** 2 > (r + 4) ** 2)
    assert region.sum() > 100

    def diff(i):
        return np.abs(obj[i].astype(np.float32) - still[i].astype(np.float32)).mean(-1)[region].mean()

    assert diff(-1) < 0.25 * diff(2), (diff(-1), diff(2))  # diff(2): the disc itself, what a full trail would keep


def test_without_opencv_still_regions_are_kept(eng, monkeypatch):
    import stylert.engine.video as V

    monkeypatch.setattr(V.Motion, "available", property(lambda self: False))
    frames = [next(_frames(1, (64, 48), seed=i)) for i in range(6)]
    frames = [frames[0]] * 6  # a still camera
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    outs = list(stylize_frames(eng, frames, style))
    assert all(o.shape == frames[0].shape for o in outs)


# ----------------------------------------------------------------------------- hostile files
def _clip(path, n=12, size=(64, 48), **kw):  # a short silent clip without a cut
    return make_clip(path, n, size, fps=10, audio=False, cut_at=None, **kw)


def _pts(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [round(float(f.pts * f.time_base), 3) for f in c.decode(s)]


def test_a_file_created_under_the_output_name_meanwhile_is_kept(tmp_path, eng):
    src = _clip(tmp_path / "c.mp4")
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    dst = tmp_path / "out.mp4"

    def other_program(done, total, secs):
        if not dst.exists():
            dst.write_bytes(b"another program's file")

    r = stylize_video(eng, src, dst, style, batch=4, progress=other_program)
    assert dst.read_bytes() == b"another program's file"
    assert r["dst"] == str(tmp_path / "out-2.mp4") and len(_pts(r["dst"])) == 12
    assert sorted(os.listdir(tmp_path)) == ["c.mp4", "out-2.mp4", "out.mp4"]


def test_a_failing_encoder_ends_with_an_error_not_a_hang(tmp_path, eng, monkeypatch):
    import time

    src = _clip(tmp_path / "c.mp4", n=30)
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    real = av.VideoFrame.from_ndarray
    calls = {"n": 0}

    def failing(*a, **k):  # the encoder side dies mid-clip (as a GPU encoder does without a GPU)
        calls["n"] += 1
        if calls["n"] > 5:
            raise PermissionError("Operation not permitted: 'avcodec_open2(h264_nvenc)'")
        return real(*a, **k)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", staticmethod(failing))
    t = time.monotonic()
    with pytest.raises(StyleRTError, match="could not be transcoded"):
        stylize_video(eng, src, tmp_path / "out.mp4", style, batch=4)
    assert time.monotonic() - t < 30
    assert sorted(os.listdir(tmp_path)) == ["c.mp4"]


def test_ctrl_c_ends_promptly_and_cleanly(tmp_path, eng, monkeypatch):
    import time

    import stylert.engine.video as V

    src = _clip(tmp_path / "c.mp4", n=40)
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    real, calls = V.TemporalStylizer.__call__, {"n": 0}

    def interrupted(self, frames, flows=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, frames, flows)

    monkeypatch.setattr(V.TemporalStylizer, "__call__", interrupted)
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        stylize_video(eng, src, tmp_path / "out.mp4", style, batch=4)
    assert time.monotonic() - t < 5
    assert sorted(os.listdir(tmp_path)) == ["c.mp4"]


def test_frames_over_the_pixel_limit_are_refused_before_decoding(tmp_path, eng):
    src = _clip(tmp_path / "c.mp4")
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    with pytest.raises(StyleRTError, match=r"(?s)64x48 frames .* over the limit.*--max-pixels"):
        stylize_video(eng, src, tmp_path / "out.mp4", style, max_pixels=1000)
    assert not (tmp_path / "out.mp4").exists()


def test_a_phone_video_s_rotation_is_applied(tmp_path, shipped):
    eng = shipped  # at strength 0 it gives the photo back: the strip shows where it went
    src = _clip(tmp_path / "c.mp4", rotation=90)
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    r = stylize_video(eng, src, tmp_path / "out.mp4", style, strength=0.0, temporal=0.0)
    assert r["rotation"] == 90
    with av.open(r["dst"]) as c:
        f = next(c.decode(video=0))
        assert (f.width, f.height) == (48, 64) and (f.rotation or 0) == 0  # written upright
        a = f.to_ndarray(format="rgb24").astype(float)
    # the stored frame's left strip, turned counter-clockwise, is the displayed frame's bottom
    assert a[-4:].mean() > a[:-8].mean() + 40


def test_variable_frame_timing_is_kept(tmp_path, eng):
    pts = [0, 100, 150, 400, 420, 900, 1000, 1030, 1500, 1600, 1700, 2500]
    src = _clip(tmp_path / "c.mkv", pts=pts)
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    r = stylize_video(eng, src, tmp_path / "out.mkv", style)
    assert _pts(r["dst"]) == _pts(src) == [p / 1000 for p in pts]
    r = stylize_video(eng, src, tmp_path / "out.mp4", style)
    assert _pts(r["dst"]) == [p / 1000 for p in pts]


def test_a_truncated_file_is_an_error_naming_it(tmp_path, eng):
    src = _clip(tmp_path / "c.mp4", n=20, options={"movflags": "faststart"})
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    style = eng.encode_style(next(_frames(1, (48, 48), seed=3)))
    with pytest.raises(StyleRTError, match=r"(?s)could not be decoded past frame .* of 20.*truncated") as e:
        stylize_video(eng, src, tmp_path / "out.mp4", style)
    assert str(src) in str(e.value)
