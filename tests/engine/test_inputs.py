"""Bad and unusual inputs: each gives a StyleRTError naming the file, or a correct result."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stylert.engine import Engine
from stylert.engine.errors import StyleRTError


@pytest.fixture(scope="module")
def eng(tiny_export):
    return Engine.load(tiny_export)


@pytest.fixture(scope="module")
def style():
    return np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)


def _png_claiming(path, w, h):
    """A valid PNG header and tiny IDAT claiming w x h pixels: a decompression bomb's size
    at no cost."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_bad_files_name_the_file(eng, style, tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(good)
    cases = {}
    cases["zero.jpg"] = b""
    cases["text.jpg"] = b"this is not an image\n"
    cases["truncated.jpg"] = good.read_bytes()[: len(good.read_bytes()) // 3]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    _png_claiming(tmp_path / "bomb.png", 20000, 20000)
    for name in [*cases, "bomb.png"]:
        p = tmp_path / name
        with pytest.raises(StyleRTError) as e:
            eng.stylize(p, style)
        assert str(p) in str(e.value) and "\nNote:" in str(e.value), name


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_modes_give_rgb_results_of_the_input_size(eng, style, tmp_path, mode):
    rgb = Image.fromarray((np.random.default_rng(0).random((30, 41, 3)) * 255).astype(np.uint8))
    img = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
    suffix = ".tif" if mode == "CMYK" else ".png"
    p = tmp_path / f"img_{mode.replace(';', '')}{suffix}"
    img.save(p)
    for src in (p, img):
        out = eng.stylize(src, style)
        assert out.mode == "RGB" and out.size == (41, 30)


def test_exif_rotation_is_applied(eng, style, tmp_path):
    img = Image.fromarray((np.random.default_rng(0).random((20, 50, 3)) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    p = tmp_path / "rotated.jpg"
    img.save(p, exif=exif.tobytes())
    assert eng.stylize(p, style).size == (20, 50)


def test_arrays_of_every_layout(eng, style):
    rng = np.random.default_rng(0)
    for a in (rng.random((17, 19)), (rng.random((17, 19, 4)) * 255).astype(np.uint8),
              (rng.random((3, 17, 19)) * 65535).astype(np.uint16), rng.random((17, 19, 1)).astype(np.float32)):
        out = eng.stylize(a, style)
        assert out.shape == (17, 19, 3)
    for bad in (np.zeros((0, 5, 3)), np.zeros((5, 5, 7)), np.array([[np.nan]]), np.zeros((4, 4), np.complex64)):
        with pytest.raises(StyleRTError):
            eng.stylize(bad, style)


# ----------------------------------------------------------------------------- the formats phones write
def _phone_photo(path, fmt):
    """A 60 x 40 photo, red left and blue right, saved as HEIC or AVIF with EXIF orientation 6
    (the camera held upright: shown turned 90 degrees clockwise, 40 x 60, red on top)."""
    a = np.zeros((40, 60, 3), np.uint8)
    a[:, :30], a[:, 30:] = (200, 30, 30), (30, 30, 200)
    exif = Image.Exif()
    exif[0x0112] = 6
    if fmt == "heic":
        heif = pytest.importorskip("pillow_heif", reason="HEIC needs pillow-heif (a dependency of stylert)")
        heif.from_pillow(Image.fromarray(a)).save(path, quality=95, exif=exif.tobytes())
    else:
        from PIL import features

        if not features.check("avif"):
            pytest.skip("this Pillow was built without AVIF (11.3 and newer read it)")
        Image.fromarray(a).save(path, format="AVIF", quality=95, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("fmt", ["heic", "avif"])
def test_phone_formats_are_read_upright_everywhere(eng, style, tmp_path, fmt, tiny_export, capsys):
    from stylert.engine.cli import main
    from stylert.engine.images import list_images, load_image, load_image_bytes

    (tmp_path / "in").mkdir()
    path = _phone_photo(tmp_path / "in" / f"IMG_0001.{fmt.upper()}", fmt)
    for img in (load_image(path), load_image_bytes(path.read_bytes(), "upload")):  # files (CLI, API), uploads (serve)
        a = np.asarray(img)
        assert img.size == (40, 60) and a[0, 0, 0] > 150 and a[-1, 0, 2] > 150  # upright: red on top, blue below
    assert list_images(tmp_path / "in") == [path]  # folder scans (calibration, evaluation, training) find it
    assert eng.stylize(path, style).size == (40, 60)
    assert eng.encode_style(path).channels > 0
    # the CLI writes --format (PNG by default: lossless, 8-bit sRGB) under the photo's name
    assert main(["stylize", str(tmp_path / "in"), "--style", str(path), "--model", str(tiny_export),
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert Image.open(tmp_path / "out" / "IMG_0001.png").size == (40, 60)


def _display_p3_icc() -> bytes:
    """A minimal ICC v2 RGB profile with Display P3's primaries (D50-adapted, as Apple's) and a
    2.2 gamma: what a phone's photo carries, without shipping a profile file."""
    import struct

    def s15(v):
        return struct.pack(">i", round(v * 65536))

    def xyz(x, y, z):
        return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)

    desc = b"Display P3 (test)\0"
    tags = [(b"desc", b"desc" + b"\0" * 4 + struct.pack(">I", len(desc)) + desc + b"\0" * 12 + b"\0" * 67),
            (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)),
            (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)), (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)),
            *[(t, b"curv" + b"\0" * 4 + struct.pack(">IH", 1, 0x0233) + b"\0\0") for t in (b"rTRC", b"gTRC", b"bTRC")],
            (b"cprt", b"text" + b"\0" * 4 + b"none\0\0\0\0")]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + b"\0" * 12 + b"acsp"
              + b"\0" * 24 + struct.pack(">I", 0) + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + data


def test_a_wide_gamut_profile_is_turned_into_srgb(tmp_path):
    from PIL import ImageCms

    from stylert.engine.images import load_image

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (8, 8), (120, 130, 140)).save(tmp_path / "s.png", icc_profile=srgb)
    Image.new("RGB", (8, 8), (40, 160, 60)).save(tmp_path / "p.png", icc_profile=_display_p3_icc())
    assert np.asarray(load_image(tmp_path / "s.png"))[0, 0].tolist() == [120, 130, 140]  # sRGB: untouched
    r, g, b = np.asarray(load_image(tmp_path / "p.png"))[0, 0].tolist()
    assert g > 160 and r < 40  # P3's green is greener than sRGB's: the same numbers say more in sRGB
