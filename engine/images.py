"""Reading and writing images: the one place that turns files into float32 RGB arrays.

Torch-free: the runtime, training and build-engine's calibration all read images here.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import StyleRTError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm",
                  ".heic", ".heif", ".hif", ".avif"}
READABLE = "PNG, JPEG, WebP, BMP, TIFF, GIF, PPM, HEIC/HEIF or AVIF"  # IMAGE_SUFFIXES, in words

# The formats phones write are ISO BMFF files ("ftyp" + a brand in bytes 4..12): HEIC/HEIF
# (iPhones, most Androids) through pillow-heif, AVIF through Pillow itself (11.3 and newer).
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"mif2", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
_heif_opener: bool | None = None  # registered with Pillow: None not yet tried, False not installed

# Pillow's decompression-bomb guard stays on; we raise our own error with a remedy instead of
# its DecompressionBombWarning/Error. 20000 x 20000 is refused by default.
MAX_PIXELS_DEFAULT = 89_478_485  # Pillow's own default limit


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in `folder`, sorted. Raises if the folder is missing or empty."""
    folder = Path(folder)
    if not folder.exists():
        raise StyleRTError("folder does not exist.", "Pass a folder of images.", path=folder)
    if not folder.is_dir():
        raise StyleRTError("is not a folder.", "Pass a folder of images.", path=folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise StyleRTError(
            "folder holds no images.",
            f"Expected files ending in one of {sorted(IMAGE_SUFFIXES)}.",
            path=folder,
        )
    return files


def _register_heif() -> bool:
    """pillow-heif's HEIC/HEIF opener registered with Pillow, once; False when it is not
    installed. Done on the first such file, not at import: its import costs 50 ms that a run
    of JPEGs need not pay. (It turns the picture upright by the file's own rotation and sets
    the EXIF orientation to 1, so to_rgb's exif_transpose never turns it twice.)"""
    global _heif_opener
    if _heif_opener is None:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _heif_opener = True
        except ImportError:
            _heif_opener = False
    return _heif_opener


def _brand(head: bytes) -> bytes | None:
    """An ISO BMFF file's major brand (b"heic", b"avif", ...), or None."""
    return head[8:12] if len(head) >= 12 and head[4:8] == b"ftyp" else None


def _to_srgb(img: Image.Image) -> Image.Image:
    """Pixels described by an embedded ICC profile other than sRGB (a phone's Display P3)
    converted to sRGB, which the model was trained on and every viewer assumes for the output:
    read as they are, wide-gamut colours would come out dull. Unchanged when there is no
    profile, it is sRGB already, or the conversion is not possible (an unusual mode)."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA"):
        return img
    import io

    try:
        from PIL import ImageCms
    except ImportError:  # a Pillow built without littlecms
        return img
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(src).replace(" ", "").lower():
            return img
        out = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode=img.mode)
        return out if out is not None else img
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: EXIF rotation applied, an embedded colour profile turned
    into sRGB, alpha composited on white, 16-bit scaled down, palette and CMYK converted."""
    img = _to_srgb(ImageOps.exif_transpose(img))
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(a * (255.0 if a.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    return img.convert("RGB")


class NotAnImage(StyleRTError):
    """The bytes are in no format Pillow reads."""


class CorruptImage(StyleRTError):
    """A known format that fails to decode (truncated, damaged)."""


class ImageTooLarge(StyleRTError):
    """More pixels than the limit: a decompression bomb or simply too big."""


def load_image(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS_DEFAULT) -> Image.Image:
    """Open an image file as 8-bit RGB, with errors that name the file and the remedy."""
    import stat

    path = Path(path)
    if not path.exists():
        raise StyleRTError("file does not exist.", path=path)
    if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block the reader
        raise StyleRTError("is not a regular file (a folder, pipe, device or socket).", "Pass an image file.", path=path)
    if path.stat().st_size == 0:
        raise StyleRTError("file is empty (0 bytes).", "Re-export or re-download the image.", path=path)
    return _decode(path, path, max_pixels)


def load_image_bytes(data: bytes, name: str = "image", max_pixels: int | None = MAX_PIXELS_DEFAULT) -> Image.Image:
    """The same as load_image for an image held in memory (an upload); `name` goes in errors."""
    import io

    if not data:
        raise NotAnImage("is empty (0 bytes).", "Send the image file's bytes.", path=name)
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source, name, max_pixels: int | None) -> Image.Image:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            head = f.read(12)
    else:
        head = source.getvalue()[:12]
    brand = _brand(head)
    if brand is not None:
        _register_heif()
    try:
        with Image.open(source) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise ImageTooLarge(
                    f"image is {w}x{h} = {w * h / 1e6:.0f} megapixels, over the limit of {max_pixels / 1e6:.0f}.",
                    "Downscale it first, or raise the limit (--max-pixels / max_pixels=) if you trust the file.",
                    path=name,
                )
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im.load()
            return to_rgb(im)
    except StyleRTError:
        raise
    except UnidentifiedImageError:
        if brand in HEIF_BRANDS and not _heif_opener:
            raise NotAnImage("is a HEIC/HEIF image and pillow-heif, which reads them, is not installed.",
                             "pip install pillow-heif (a dependency of stylert: reinstall it), or convert the file to JPEG.",
                             path=name) from None
        if brand in AVIF_BRANDS:
            raise NotAnImage("is an AVIF image and this Pillow was built without AVIF.",
                             "pip install -U 'pillow>=11.3' (its wheels read AVIF), or convert the file to JPEG.", path=name) from None
        raise NotAnImage("is not an image Pillow can read.", f"Use {READABLE}.", path=name) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLarge(f"could not be decoded: {e}.", "Downscale it first.", path=name) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise CorruptImage(f"could not be decoded: {e}.", "The file is probably truncated or corrupt.", path=name) from None


def center_crop(img: Image.Image, height: int, width: int, downscale: bool = True) -> Image.Image:
    """Scale `img` (bicubic) so it just covers height x width, then take the centre.
    downscale=False only enlarges images smaller than the crop (larger ones keep their pixels)."""
    s = max(height / img.height, width / img.width)
    if s > 1 or downscale:
        img = img.resize((max(width, round(img.width * s)), max(height, round(img.height * s))), Image.BICUBIC)
    left, top = (img.width - width) // 2, (img.height - height) // 2
    return img.crop((left, top, left + width, top + height))


def to_array(img: Image.Image) -> np.ndarray:
    """RGB PIL image -> float32 (3, H, W) in [0, 1]."""
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0


def to_pil(arr: np.ndarray) -> Image.Image:
    """float (3, H, W) in [0, 1] -> RGB PIL image (rounded, clipped)."""
    a = np.clip(np.asarray(arr, dtype=np.float32).transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(a, "RGB")


_UMASK = os.umask(0)
os.umask(_UMASK)


def make_readable(folder: str | os.PathLike) -> None:
    """Give a folder made by tempfile.mkdtemp (mode 0700) the permissions a normal mkdir
    would have under the umask, so other users can read what it holds."""
    os.chmod(folder, 0o777 & ~_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, exclusive: bool = False) -> None:
    """Write to a temporary file beside `path`, then rename: never a partial file.

    exclusive: never replace an existing file, even one another process wrote a moment ago
    (the temporary file is hard-linked into place, which fails if the name exists): raises
    FileExistsError. Two writers into one folder then cannot replace each other's results."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_image(img: Image.Image, path: str | os.PathLike, **kwargs) -> bytes:
    """The bytes of `img` in the format `path`'s suffix names (kwargs: the encoder's, e.g. quality)."""
    import io

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise StyleRTError(f"unknown image format '{path.suffix}'.", "Use .png, .jpg or .webp.", path=path)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def save_image(img: Image.Image, path: str | os.PathLike, exclusive: bool = False, **kwargs) -> None:
    """Save atomically; the format comes from the suffix. exclusive: see atomic_write_bytes.
    A run's outputs go through outputs.RunOutputs, which names them and applies --overwrite."""
    atomic_write_bytes(path, encode_image(img, path, **kwargs), exclusive=exclusive)


def _box(a: np.ndarray, r: int) -> np.ndarray:
    """(C, h, w) -> means over (2r+1)^2 windows, the border replicated (summed-area tables)."""
    k = 2 * r + 1
    c = np.pad(a.astype(np.float64), ((0, 0), (r + 1, r), (r + 1, r)), mode="edge").cumsum(1).cumsum(2)
    return ((c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]) / (k * k)).astype(np.float32)


def guided_upsample(y: np.ndarray, guide_small: np.ndarray, guide: np.ndarray, radius: int = 2,
                    eps: float = 2e-3, rows: int = 256) -> np.ndarray:
    """Edge-aware upsampling (He & Sun's fast guided filter): `y` (3, h, w), the stylization
    of `guide_small` (3, h, w), brought to the size of `guide` (3, H, W), the full-size content.

    Per channel and low-resolution window (radius `radius`), y is fitted as a * guide + b; a
    and b are smoothed, upsampled bilinearly and applied to the full-size guide. Where the
    content is flat (variance below `eps`) a is ~0 and the painted strokes come through as
    they are; across the content's strong edges a follows them, so they stay sharp at full
    size instead of the blur plain upscaling gives. The full-size part runs `rows` rows at a
    time: memory beyond the output stays a few strips, whatever the image's size."""
    h, w = y.shape[1:]
    H, W = guide.shape[1:]
    mI, mp = _box(guide_small, radius), _box(y, radius)
    cov = _box(guide_small * y, radius) - mI * mp
    var = _box(guide_small * guide_small, radius) - mI * mI
    a = cov / (var + eps)
    a, b = _box(a, radius), _box(mp - a * mI, radius)
    out = np.empty((3, H, W), np.float32)
    for y0 in range(0, H, rows):
        y1 = min(H, y0 + rows)
        box = (0.0, y0 * h / H, float(w), y1 * h / H)
        for c in range(3):
            up = [np.asarray(Image.fromarray(m[c], "F").resize((W, y1 - y0), Image.BILINEAR, box=box)) for m in (a, b)]
            out[c, y0:y1] = up[0] * guide[c, y0:y1] + up[1]
    return np.clip(out, 0.0, 1.0, out=out)


def read_regular_file(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, or StyleRTError. Opened without
    blocking and checked before reading, so a FIFO, a device or a socket planted where a file
    belongs is refused at once instead of hanging the reader."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise StyleRTError(f"cannot be opened: {e.strerror}.", "Check the path and its permissions.", path=path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StyleRTError("is not a regular file (a folder, pipe, device or socket).", "Pass a regular file.", path=path)
        if st.st_size > max_bytes:
            raise StyleRTError(f"is {st.st_size} bytes, over the {max_bytes}-byte limit for it.", "Pass the right file.", path=path)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise StyleRTError(f"grew over the {max_bytes}-byte limit while read.", "Pass the right file.", path=path)
        return data
    finally:
        os.close(fd)


# ============================================================================= engine inputs and outputs
# What Engine reads and returns: any supported image as a float32 (3, H, W) array in [0, 1],
# batches padded to the model's multiple and cropped back, masks, resizing of float arrays.
RANGE_TOLERANCE = 1e-3  # resampling may overshoot [0, 1] by a hair; anything beyond is a mistake


def as_array(img: Any, name: str | None = None) -> np.ndarray:
    """Any supported image (path, PIL, ndarray) -> float32 (3, H, W) in [0, 1]."""
    if isinstance(img, (str, os.PathLike)):
        return to_array(load_image(img))
    if isinstance(img, Image.Image):
        return to_array(to_rgb(img))
    if isinstance(img, np.ndarray):
        return _array_to_chw(img, name)
    raise StyleRTError(f"unsupported image type {type(img).__name__}.",
                       "Pass a file path, a PIL image or a NumPy array.", path=name)


def _array_to_chw(a: np.ndarray, name: str | None) -> np.ndarray:
    if a.ndim == 2:
        a = a[:, :, None]
    elif a.ndim == 3 and a.shape[-1] not in (1, 3, 4) and a.shape[0] in (1, 3, 4):
        a = a.transpose(1, 2, 0)  # CHW -> HWC
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise StyleRTError(f"image array has shape {a.shape}.", "Expected (H, W), (H, W, 1|3|4) or (1|3|4, H, W).", path=name)
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating) or a.dtype == bool:
        f = a.astype(np.float32)
        if not np.all(np.isfinite(f)):
            raise StyleRTError("image array holds NaN or infinite values.", "Pass finite values in [0, 1].", path=name)
        lo, hi = float(f.min()), float(f.max())
        if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
            raise StyleRTError(f"float image array values span [{lo:.4g}, {hi:.4g}], outside [0, 1].",
                               "Float arrays are read as [0, 1]: divide 8-bit values by 255 (or pass uint8).", path=name)
        f = np.clip(f, 0.0, 1.0)
    else:
        raise StyleRTError(f"image array has dtype {a.dtype}.", "Use uint8, uint16, or float in [0, 1].", path=name)
    if f.shape[-1] == 4:  # composite on white, as images.to_rgb does for files
        f = f[..., :3] * f[..., 3:] + (1.0 - f[..., 3:])
    elif f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    return np.ascontiguousarray(f.transpose(2, 0, 1))


def pad_to_multiple(x: np.ndarray, m: int) -> np.ndarray:
    """(..., H, W) -> reflect-padded on the bottom/right to multiples of m ('edge' where the
    image is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = -h % m, -w % m
    if not (ph or pw):
        return x
    pads = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    mode = "reflect" if h > ph and w > pw else "edge"
    return np.pad(x, pads, mode=mode)


def preprocess(images: Sequence[Any], multiple: int = 8) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Images of one size -> (batch (N, 3, H', W') float32 in [0, 1], H' W' multiples of
    `multiple`; the original (H, W) of each). Engine.stylize groups mixed sizes itself."""
    arrs = [as_array(im) for im in images]
    sizes = [a.shape[1:] for a in arrs]
    if len(set(sizes)) > 1:
        raise StyleRTError(f"preprocess got images of several sizes {sorted(set(sizes))}.",
                           "Batch images of one size (Engine.stylize groups them for you).")
    return np.stack([pad_to_multiple(a, multiple) for a in arrs]), [tuple(s) for s in sizes]


def postprocess(y: np.ndarray, sizes: Sequence[tuple[int, int]], kind: str = "pil") -> list:
    """Batch (N, 3, H', W') -> N images cropped to `sizes`: kind "pil" (RGB), "uint8"
    ((H, W, 3) uint8) or "float" ((H, W, 3) float32 in [0, 1])."""
    out = []
    for img, (h, w) in zip(y, sizes):
        a = img[:, :h, :w]
        if kind == "pil":
            out.append(to_pil(a))
        elif kind == "uint8":
            out.append(np.asarray(to_pil(a)))
        elif kind == "float":
            out.append(np.ascontiguousarray(np.clip(a, 0.0, 1.0).transpose(1, 2, 0)))
        else:
            raise ValueError(f"unknown output kind {kind!r}")
    return out


def _kind_of(img: Any) -> str:
    if isinstance(img, np.ndarray):
        return "float" if np.issubdtype(img.dtype, np.floating) else "uint8"
    return "pil"


def _name_of(img: Any, i: int, kind: str = "input") -> str:
    return os.fspath(img) if isinstance(img, (str, os.PathLike)) else f"{kind} #{i}"


def as_mask(m: Any, name: str) -> np.ndarray:
    """Path, PIL or array -> float32 (H, W) in [0, 1] (the luminance of colour masks)."""
    if isinstance(m, (str, os.PathLike)):
        m = load_image(m)
        name = os.fspath(name)
    if isinstance(m, Image.Image):
        return np.asarray(to_rgb(m).convert("L"), np.float32) / 255.0
    a = as_array(np.asarray(m), name)
    return a.mean(0)


def _resize_mask(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if m.shape == tuple(size):
        return m
    im = Image.fromarray(m.astype(np.float32), "F").resize((size[1], size[0]), Image.BILINEAR)
    return np.clip(np.asarray(im, np.float32), 0.0, 1.0)


def _as_float_array(a: Any, what: str) -> np.ndarray:
    """A NumPy float32 array of `a`, or a StyleRTError that says what it was instead."""
    try:
        return np.asarray(a, np.float32)
    except (TypeError, ValueError):
        raise StyleRTError(f"{what} is a {type(a).__name__} that is not an array of numbers.",
                           "Pass a NumPy float32 array.") from None


def reflect_pad(a: np.ndarray, m: int) -> np.ndarray:
    """(C, H, W) with an m-pixel mirrored margin on every side (edge-repeated where a side is
    a single pixel)."""
    if m == 0:
        return a
    mode = "reflect" if min(a.shape[1:]) > 1 else "edge"
    return np.pad(a, ((0, 0), (m, m), (m, m)), mode=mode)


def _longer_side_to(a: np.ndarray, side: int) -> np.ndarray:
    """(3, H, W) scaled (up or down) so its longer side is `side`; unchanged when it is."""
    s = side / max(a.shape[1:])
    if s == 1.0:
        return a
    return _resize_array(a, (max(1, round(a.shape[1] * s)), max(1, round(a.shape[2] * s))))


def _resize_array(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(3, H, W) float -> (3, size) with Lanczos per channel (float, no 8-bit rounding)."""
    return np.stack([np.asarray(Image.fromarray(c.astype(np.float32), "F").resize((size[1], size[0]), Image.LANCZOS))
                     for c in a]).clip(0.0, 1.0)


def _downsample(m: np.ndarray, d: int) -> np.ndarray:
    """(H, W) with H, W multiples of d -> (H/d, W/d) block means."""
    h, w = m.shape
    return m.reshape(h // d, d, w // d, d).mean(axis=(1, 3))
