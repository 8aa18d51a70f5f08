"""`stylert stylize`: content files, folders or globs -> stylized images in --out.

Top-level imports stay light (stdlib, numpy via the runtime on demand): `stylert --help`
never imports torch or onnxruntime.
"""

from __future__ import annotations

import glob
from collections import deque
from concurrent.futures import ThreadPoolExecutor
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from .config_args import add_fields
from .options import ENGINE_FIELDS, EngineChoice, add_engine_options
from .runtime import MAX_SIDE, STYLE_SIDE

FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}


@dataclass
class StylizeOptions(EngineChoice):
    """Every option of `stylert stylize` with its default: the parser is generated from it."""

    content: list[str] = field(default_factory=list)
    style: list[str] = field(default_factory=list)
    style_weights: list[float] | None = None
    strength: float = 1.0
    mask: list[str] | None = None
    preserve_color: bool = False
    no_palette: bool = False
    out: str = "stylized"
    format: str = "png"
    quality: int = 92
    tile: int = 1024
    overlap: int = 64
    style_size: int = STYLE_SIDE
    max_side: int = MAX_SIDE
    max_pixels: int = 89_478_485
    overwrite: bool = False
    grid: bool = False
    save_style: str | None = None
    no_progress: bool = False
    temporal: float = 0.9
    cut_threshold: float = 0.12
    codec: str | None = None
    crf: int = 20
    frames: bool = False


VIDEO = ("temporal", "cut_threshold", "codec", "crf", "frames")
HELP = {
    "content": "content image files, folders (recursive) or glob patterns",
    "style": "style image or StyleCode .json; repeat to mix several",
    "style_weights": "one weight per --style (normalized)",
    "strength": "0 = content, 1 = full style",
    "mask": "one mask image per --style (white = that style)",
    "preserve_color": "keep the content's colours (CORAL recolour of the style)",
    "no_palette": "keep the decoder's own colours: skip the last step, which moves each output's colours "
                  "to the style's palette (mean and covariance of its RGB)",
    "out": "output folder, created",
    "format": "output format",
    "quality": "JPEG/WebP quality",
    "tile": "images with a side above this run in tiles",
    "overlap": "tile overlap in pixels",
    "style_size": "longer side each style image is scaled to before encoding, so results do not depend on its "
                  "file's resolution: larger paints bigger, flatter shapes, smaller finer strokes; 0 = as the file "
                  "is (the default is the scale the model trained at)",
    "max_side": "the working resolution, i.e. the stroke scale: larger images are stylized at this longer side and "
                "brought back to their own size by edge-aware upsampling (sharp edges, the painting's strokes as "
                "large relative to the picture as at this size); smaller values paint larger strokes; 0 = stylize "
                "at full size (in tiles; strokes then become a fine grain on large photos)",
    "max_pixels": "refuse larger images (decompression bombs)",
    "overwrite": "replace existing output files",
    "grid": "also write grid.FORMAT: contents (rows) x styles (columns)",
    "save_style": "also write the (mixed) StyleCode to this file",
    "no_progress": "no progress bar",
    "temporal": "steadiness: the weight of past frames in the content statistics and the style offset, reset at "
                "each scene cut; 0 = every frame on its own (flickers)",
    "cut_threshold": "mean difference of consecutive frames (0..1) that starts a new shot",
    "codec": "video encoder (default: libx264 for mp4/mov/mkv, libvpx-vp9 for webm, mpeg4 for avi, gif)",
    "crf": "constant rate factor, lower is better quality",
    "frames": "each content folder is one frame sequence (numbered frames, sorted by name): stylized steadily "
              "into --out/FOLDER/ under the same names",
}


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser(
        "stylize",
        help="stylize photos with one or several style images",
        description=textwrap.dedent("""
            Encode each content image and the style image (its longer side scaled to
            --style-size), move the style's statistics onto the content's latent (AdaIN) and
            decode with the style decoder, which paints the style's strokes and patterns from
            the difference of the two style codes (`--strength` scales it: 0 gives the photo
            back, 1 the full style); the output's colours are then moved to the style's palette
            (--no-palette keeps the decoder's). Several --style options mix
            styles by weight (--style-weights, or PATH:WEIGHT); --mask gives each style a
            region; --preserve-color keeps the content's colours. Outputs keep the input's
            size and go to --out as NAME.FORMAT, written atomically; existing files are
            skipped unless --overwrite, and no two outputs of one run share a name (a.png
            and a.jpg give a.png and a_2.png; the --grid sheet keeps grid.FORMAT). A file
            that fails is reported with its reason at the end (exit 1) and every other file
            is still written. HEIC and AVIF photos are read upright and in sRGB. Without --model the shipped
            model runs (its ONNX export ships with it; on CPUs with native BF16 and OpenVINO
            installed, its OpenVINO engine is built once into the cache).""").strip(),
        epilog="example:\n" + textwrap.indent(textwrap.dedent("""
            stylert stylize ../shared/data/content --style ../shared/data/style/brushstrokes.jpg --out stylized/
            stylert stylize 'photos/*.jpg' --style a.jpg:0.7 --style b.jpg:0.3 --strength 0.8 --grid --out mix/
            stylert stylize photo.jpg --style a.jpg --style b.jpg --mask sky.png --mask ground.png --out masked/
            """).strip(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_fields(p, StylizeOptions, HELP, only=("content",), positional=("content",))
    p.add_argument("--style", action="append", required=True, metavar="PATH[:WEIGHT]", help=HELP["style"])
    p.add_argument("--mask", action="append", metavar="PATH", help=HELP["mask"])
    add_fields(p, StylizeOptions, HELP, skip=("content", "style", "mask", *VIDEO, *ENGINE_FIELDS),
               choices={"format": sorted(FORMATS)},
               metavar={"style_weights": "W", "style_size": "PX", "max_side": "PX", "save_style": "JSON"})
    add_engine_options(p)
    v = p.add_argument_group("video (files ending in .mp4 .mov .m4v .mkv .webm .avi, animated .gif; PyAV)")
    add_fields(v, StylizeOptions, HELP, only=VIDEO)
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- checks
def check_options(a) -> None:
    """Every numeric option checked before any file is read (exit 2 with the option named)."""
    from .errors import StyleRTError

    def bad(opt, value, want):
        raise StyleRTError(f"{opt} {value} is invalid.", want)

    if not 0.0 <= a.strength <= 1.0:
        bad("--strength", a.strength, "0 keeps the content, 1 is the full style: pass a number in [0, 1].")
    if a.max_side != 0 and a.max_side < 8:
        bad("--max-side", a.max_side, f"It is the working resolution's longer side: at least 8 pixels (default {MAX_SIDE}), or 0 for full size.")
    if a.style_size != 0 and not 8 <= a.style_size <= 4096:
        bad("--style-size", a.style_size, f"The longer side style images are encoded at: 8..4096 pixels (default {STYLE_SIDE}), or 0 for their own size.")
    if a.overlap < 0:
        bad("--overlap", a.overlap, "Tiles overlap by a number of pixels >= 0 (default 64).")
    if a.tile < 16 or a.tile <= 2 * a.overlap:
        bad("--tile", a.tile, f"Tiles must be at least 16 pixels and larger than twice --overlap ({a.overlap}).")
    if not 1 <= a.quality <= 100:
        bad("--quality", a.quality, "JPEG/WebP quality is 1..100.")
    if a.max_pixels < 1:
        bad("--max-pixels", a.max_pixels, "The largest image accepted, in pixels: a positive number.")
    if a.threads is not None and a.threads < 1:
        bad("--threads", a.threads, "At least 1.")
    if not 0.0 <= a.temporal < 1.0:
        bad("--temporal", a.temporal, "The weight of past frames: 0 (none) up to 0.99.")
    if not 0.0 < a.cut_threshold <= 1.0:
        bad("--cut-threshold", a.cut_threshold, "A mean frame difference in (0, 1], e.g. 0.12.")
    if not 0 <= a.crf <= 63:
        bad("--crf", a.crf, "0..63; lower is better quality (18-28 is usual).")


def check_out_folder(out: Path, items: list[str], contents: list[Path]) -> None:
    """Refuse an output folder that is, or lies inside, an input folder (its outputs would be
    read as inputs on the next run, and --overwrite could replace the originals), or any
    output name that is an input file."""
    from .errors import StyleRTError

    o = out.resolve()
    for it in items:
        p = Path(it)
        if p.is_dir() and (o == p.resolve() or p.resolve() in o.parents):
            raise StyleRTError(f"the output folder is inside the input folder {it}.",
                               "Outputs would be taken for inputs next time: choose an --out outside it.", path=out)
    if any(c.resolve().parent == o for c in contents):
        raise StyleRTError("the output folder holds input images.", "Choose an --out that holds no input.", path=out)


# ----------------------------------------------------------------------------- inputs
def expand_contents(items: list[str]) -> list[Path]:
    """Files, folders (recursive: images and videos) and globs -> sorted unique paths."""
    from .errors import StyleRTError
    from .images import IMAGE_SUFFIXES
    from .video import VIDEO_SUFFIXES

    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | set(VIDEO_SUFFIXES))
            if not found:
                raise StyleRTError("folder holds no images or videos.",
                                   f"Expected files ending in one of {sorted(IMAGE_SUFFIXES | set(VIDEO_SUFFIXES))}.", path=p)
            out += found
        elif p.is_file():
            out.append(p)
        elif glob.has_magic(it):
            hits = sorted(Path(h) for h in glob.glob(it, recursive=True))
            hits = [h for h in hits if h.is_file() and h.suffix.lower() in IMAGE_SUFFIXES | set(VIDEO_SUFFIXES)]
            if not hits:
                raise StyleRTError(f"pattern '{it}' matches no image files.", "Check the pattern (quote it for the shell).")
            out += hits
        elif p.exists():
            raise StyleRTError("is not a regular file (a pipe, device or socket).", "Pass image or video files.", path=it)
        else:
            raise StyleRTError("no such file or folder.", "Pass image files, folders or glob patterns.", path=it)
    seen, uniq = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            uniq.append(p)
    return uniq


# ----------------------------------------------------------------------------- run
def run(a) -> int:
    from PIL import Image

    from .errors import StyleRTError
    from .frontend import model_folder, parse_styles, read_style
    from .images import load_image
    from .mixing import StyleCode
    from .outputs import RunOutputs, check_output, write_output
    from .runtime import Engine

    check_options(a)
    contents = expand_contents(a.content)
    style_paths, weights = parse_styles(a.style, a.style_weights)
    if a.mask and len(a.mask) != len(style_paths):
        raise StyleRTError(f"{len(a.mask)} --mask for {len(style_paths)} --style.", "Give one mask per style.")
    from .mixing import normalize_weights

    normalize_weights(weights, len(style_paths))  # bad weights fail here, before any work
    out = Path(a.out)
    check_out_folder(out, a.content, contents)
    inputs = [*contents, *style_paths, *(a.mask or [])]
    # every output of this run is named by `outs`, in this order: --save-style, the grid, videos,
    # frame folders, images (the first to ask keeps a name; outputs.py)
    outs = RunOutputs(out, a.overwrite, inputs)
    if a.save_style:
        if a.preserve_color:
            raise StyleRTError("--save-style cannot be combined with --preserve-color (the code depends on each content).")
        outs.claim(check_output(a.save_style, a.overwrite, inputs, "--save-style", made=out))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StyleRTError(f"cannot create the output folder: {e.strerror}.", "Choose a writable --out.", path=out) from None
    model = model_folder(a.model, a.backend, precision=a.precision)
    eng = Engine.load(model, backend=a.backend, precision=a.precision, device=a.device, threads=a.threads,
                      tile=a.tile, overlap=a.overlap, max_side=a.max_side or None,
                      style_side=a.style_size or None, palette=not a.no_palette)
    print(f"model {model}: {eng.info['backend']} {eng.info['precision']} on {eng.info['device']} ({eng.info['reason']})")
    print(f"config: {len(contents)} content image(s), styles {style_paths} weights {weights}, strength {a.strength}, "
          f"masks {a.mask}, preserve_color {a.preserve_color}, tile {eng.tile}/{eng.overlap}, max_side {a.max_side or 'full size'}, style_size {a.style_size or 'as is'}, "
          f"format {a.format}, overwrite {a.overwrite} -> {out}")

    styles = [read_style(p, a.max_pixels) for p in style_paths]
    for s, p in zip(styles, style_paths):
        if isinstance(s, StyleCode):  # a code of another model fails here, once, naming the file
            try:
                eng.check_codes([s])
            except StyleRTError as e:
                raise StyleRTError(e.what, e.note, path=p) from None
    masks = [load_image(m, max_pixels=a.max_pixels) for m in a.mask] if a.mask else None
    # the grid's column heads: the style images as read here (a .json style has no picture)
    style_thumbs = [s if isinstance(s, Image.Image) else None for s in styles] if a.grid else []
    if not a.preserve_color:
        # encode every style once, not once per content
        styles = [s if isinstance(s, StyleCode) else eng.encode_style(s) for s in styles]
        for s, p in zip(styles, style_paths):
            s.sources = [p]
    if a.save_style:
        from .mixing import combine

        write_output(a.save_style, combine(styles, weights).to_json().encode(), a.overwrite, inputs, "--save-style")

    ext = FORMATS[a.format]
    save_kw = {} if a.format == "png" else {"quality": a.quality}
    failures: list[tuple[str, str]] = []
    grid_rows = []
    todo = []
    gpath = outs.name("grid", ext) if a.grid else None
    videos = [c for c in contents if _is_clip(c)]
    if videos or a.frames:
        if a.mask or a.preserve_color:
            raise StyleRTError("--mask and --preserve-color apply to images, not to videos or frame sequences.",
                               "Stylize the video without them.")
        from .mixing import combine

        one = combine(styles, weights)
        _stylize_clips(eng, [(c, outs.name(c.stem, c.suffix)) for c in videos], one, a, outs.written, outs.skipped, failures)
        if a.frames:
            _stylize_sequences(eng, a.content, one, a, outs, ext, save_kw, failures)
            contents = []
    for c in contents:
        if c in videos:
            continue
        dst = outs.name(c.stem, ext)  # a.png and a.jpg, or a.jpg from two folders: a.png and a_2.png
        if outs.exists(dst) and not a.grid:  # there before this run: kept, not stylized again
            outs.skipped.append(str(dst))
            continue
        todo.append((c, dst))

    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="img", disable=a.no_progress or not todo, file=sys.stderr)

    def finish(c, dst, saving) -> None:
        try:
            saving.result()  # written or skipped: outs counts it
        except (StyleRTError, OSError, MemoryError) as e:
            failures.append((str(c), str(e).replace("\n", " ")))
        bar.update()

    # Reading the next file and writing the last output run in threads beside the backend
    # (Pillow's decoders and encoders release the GIL): a PNG's compression costs about half
    # of a 384-px stylization on this model. Files are still read and written one by one, in order.
    with ThreadPoolExecutor(2, thread_name_prefix="stylert-io") as pool:
        load = lambda c: pool.submit(load_image, c, max_pixels=a.max_pixels)  # noqa: E731
        reading = load(todo[0][0]) if todo else None
        saving: deque = deque()
        for i, (c, dst) in enumerate(todo):
            bar.set_postfix_str(c.name)
            this, reading = reading, (load(todo[i + 1][0]) if i + 1 < len(todo) else None)
            try:
                img = this.result()
                y = eng.stylize(img, styles, weights=weights, strength=a.strength, mask=masks, preserve_color=a.preserve_color)
                # exclusive unless --overwrite: another stylize writing into the same folder
                # a moment ago keeps its file
                saving.append((c, dst, pool.submit(outs.save_image, y, dst, **save_kw)))
                if a.grid:
                    cols = [eng.stylize(img, [s], strength=a.strength, preserve_color=a.preserve_color) for s in styles] \
                        if len(styles) > 1 else [y]
                    grid_rows.append((img, cols))
            except (StyleRTError, OSError, MemoryError) as e:
                failures.append((str(c), str(e).replace("\n", " ")))
                bar.update()
            while len(saving) > 2 or (saving and saving[0][2].done()):
                finish(*saving.popleft())
        while saving:
            finish(*saving.popleft())
    bar.close()

    if a.grid and grid_rows:
        try:
            outs.save_image(contact_sheet(grid_rows, style_thumbs), gpath, **save_kw)
        except (StyleRTError, OSError, MemoryError) as e:
            failures.append((str(gpath), str(e).replace("\n", " ")))

    print(outs.summary())
    if failures:
        print(f"{len(failures)} file(s) failed:", file=sys.stderr)
        for name, why in failures:  # a StyleRTError's message already starts with the file
            print(f"  {why}" if str(why).startswith(str(name)) else f"  {name}: {why}", file=sys.stderr)
        return 1
    return 0


def _is_clip(path: Path) -> bool:
    """A video file, or a GIF with more than one frame."""
    from .video import is_video

    if not is_video(path):
        return False
    if path.suffix.lower() != ".gif":
        return True
    from PIL import Image

    try:
        with Image.open(path) as im:
            return getattr(im, "n_frames", 1) > 1
    except OSError:
        return False


def _progress_bar(a, desc: str, total):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=desc, disable=a.no_progress, file=sys.stderr, dynamic_ncols=True)


def _stylize_clips(eng, clips, style, a, written, skipped, failures) -> None:
    """Each (video file, its output path: out/NAME.SUFFIX, the same container, named by the
    run's RunOutputs), one at a time; a file that fails is reported and the others still run."""
    from .errors import StyleRTError
    from .video import stylize_video

    for c, dst in clips:
        if dst.exists() and not a.overwrite:
            skipped.append(str(dst))
            continue
        bar = _progress_bar(a, c.name, None)

        def tick(done, total, secs, bar=bar):
            bar.total = total
            bar.update(done - bar.n)

        try:
            r = stylize_video(eng, c, dst, style, strength=a.strength, temporal=a.temporal, cut_threshold=a.cut_threshold,
                              codec=a.codec, crf=a.crf, overwrite=a.overwrite, progress=tick)
            written.append(str(dst))
            flick = f", flicker {r['flicker']:.2f}x the input's" if r["flicker"] is not None else ""
            bar.write(f"{c.name}: {r['frames']} frames at {r['frames_per_s']} frames/s, {r['cuts']} cut(s){flick}")
        except (StyleRTError, OSError) as e:
            failures.append((str(c), str(e).replace("\n", " ")))
        finally:
            bar.close()


def _stylize_sequences(eng, items, style, a, outs, ext, save_kw, failures) -> None:
    """--frames: each content folder is one clip of numbered frames -> out/FOLDER/ under the
    same names (frames a.png and a.jpg: a.png and a_2.png; two folders of one name: FOLDER and
    FOLDER_2, named by the run's RunOutputs), steady across frames (video.stylize_frames)."""
    import numpy as np
    from PIL import Image

    from .errors import StyleRTError
    from .images import IMAGE_SUFFIXES, load_image
    from .video import Flicker, stylize_frames

    for it in items:
        folder = Path(it)
        if not folder.is_dir():
            failures.append((it, "--frames takes folders of numbered frames"))
            continue
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        dst_dir = outs.name(folder.name, "")
        dsts = [outs.name(f.stem, ext, dst_dir) for f in files]
        if files and all(outs.exists(d) for d in dsts):
            outs.skipped.extend(str(d) for d in dsts)  # done before: not stylized again
            continue
        try:
            dst_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            failures.append((str(folder), f"{dst_dir}: cannot create the output folder: {e.strerror}"))
            continue
        flick = Flicker()
        bar = _progress_bar(a, folder.name, len(files))
        try:
            frames = (np.asarray(load_image(f, max_pixels=a.max_pixels)) for f in files)
            for dst, y in zip(dsts, stylize_frames(eng, frames, style, a.strength, a.temporal, a.cut_threshold, flicker=flick)):
                outs.save_image(Image.fromarray(y), dst, **save_kw)
                bar.update(1)
            if flick.ratio is not None:
                bar.write(f"{folder.name}: {len(files)} frames, flicker {flick.ratio:.2f}x the input's")
        except (StyleRTError, OSError) as e:
            failures.append((str(folder), str(e).replace("\n", " ")))
        finally:
            bar.close()


def contact_sheet(rows, style_thumbs, cell: int = 192):
    """Contents (rows) x styles (columns): the first column is the content, the first row
    the style images (blank for StyleCodes)."""
    from PIL import Image

    ncol = 1 + len(rows[0][1])
    sheet = Image.new("RGB", (ncol * cell, (1 + len(rows)) * cell), (255, 255, 255))

    def put(img, r, c):
        if img is None:
            return
        t = img.copy()
        t.thumbnail((cell - 4, cell - 4))
        sheet.paste(t, (c * cell + (cell - t.width) // 2, r * cell + (cell - t.height) // 2))

    for j, s in enumerate(style_thumbs[: ncol - 1] if len(style_thumbs) >= ncol - 1 else []):
        put(s, 0, 1 + j)
    for i, (content, cols) in enumerate(rows):
        put(content, 1 + i, 0)
        for j, y in enumerate(cols):
            put(y, 1 + i, 1 + j)
    return sheet
