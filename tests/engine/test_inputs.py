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
