"""The page at / in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright
for Python, against `stylert serve --no-ray` on loopback with the tiny model. A photo and a
painting are uploaded, the strength slider moved with the keyboard, and the painted photo
checked (the photo's size, not the photo); bad files must be named in words on the page.

The screenshot is a test artifact: `page.png` in the test's pytest tmp folder
(`pytest --basetemp=DIR` puts it under DIR; the path is printed with -s). Skipped, with the
reason, where Playwright or Chromium is absent (the README's test command installs both where
apt-get works); Playwright's own browser download is never used.

The same steps with the shipped model make the screenshot in docs/serving.md:

    python -m tests.serve.test_page PHOTO PAINTING --out docs/page.png --phone /tmp/phone.png
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
pytest.importorskip("playwright.sync_api", reason="Playwright for Python is absent: pip install playwright")

from tests.engine.test_inputs import _png_claiming  # noqa: E402

CHROMIUM = os.environ.get("STYLERT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("Chromium is absent: apt-get install chromium (or set STYLERT_CHROMIUM to a Chromium binary)",
                allow_module_level=True)
# offline and quiet: no first-run pages, updates, sync or background requests
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
MAX_SIDE = 64  # the photo below (120x90) is larger: the page must say it is shrunk


def _photo(path, w=120, h=90):
    """A smooth picture with edges (not noise): gradients, a disc and a bar."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    a = np.stack([x, y, 1 - x * y], -1)
    a[(x - 0.35) ** 2 + (y - 0.5) ** 2 < 0.05] = (0.9, 0.8, 0.1)
    a[:, int(w * 0.7):int(w * 0.75)] = 0.1
    Image.fromarray((a * 255).astype(np.uint8)).save(path)
    return path


def _painting(path):
    """Bold red and blue diagonal stripes: statistics far from the photo's."""
    y, x = np.mgrid[0:96, 0:96]
    a = np.where(((x + y) // 8 % 2)[..., None] == 0, (200, 30, 20), (20, 40, 180)).astype(np.uint8)
    Image.fromarray(a).save(path)
    return path


@contextlib.contextmanager
def serving(folder, *options: str, timeout_s: float = 60):
    """`stylert serve --no-ray` on a free loopback port, as a newcomer runs it (its own style
    bank and cache in `folder`); yields the base URL once /readyz answers, then stops it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "stylert.engine.cli", "serve", "--no-ray", "--host", "127.0.0.1", "--port", str(port),
           "--styles-dir", str(folder / "bank"), *options]
    log = open(folder / "serve.log", "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "STYLERT_CACHE": str(folder / "cache")})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(base + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert p.poll() is None and time.monotonic() < deadline, (folder / "serve.log").read_text()[-3000:]
            time.sleep(0.2)
        yield base
    finally:
        p.terminate()
        p.wait(timeout=30)
        log.close()


def launch(pw, profile, width: int = 1280, height: int = 800):
    """Chromium with a fresh profile folder and a viewport of width x height CSS pixels."""
    return pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True, args=ARGS,
                                                 viewport={"width": width, "height": height})


def open_page(ctx, base: str):
    """The page at `base`/, once it has the service's info; JavaScript exceptions in .errors,
    every URL it requested in .requests."""
    pg = ctx.new_page()
    pg.errors, pg.requests = [], []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.goto(base + "/")
    pg.wait_for_selector("#engine:has-text('Running')")  # GET v1/info answered
    return pg


def add_painting(page, painting, name: str) -> None:
    """Upload a painting under `name`; it joins the bank and is chosen."""
    page.fill("#style-name", name)
    page.set_input_files("#style-file", str(painting))
    page.wait_for_selector(f".tile:has-text('{name}') input:checked", state="attached")


@pytest.fixture(scope="module")
def server(tiny_export, tmp_path_factory):
    with serving(tmp_path_factory.mktemp("page_server"), "--model", str(tiny_export), "--backend", "onnxruntime",
                 "--max-side", str(MAX_SIDE)) as base:
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = launch(pw, tmp_path_factory.mktemp("chromium-profile"))
        yield ctx
        ctx.close()


@pytest.fixture
def page(browser, server):
    pg = open_page(browser, server)
    yield pg
    pg.close()


def _result_bytes(page) -> bytes:
    """The painted photo the page shows, as the browser holds it (a blob: URL)."""
    data = page.evaluate("""async () => {
        const b = await (await fetch(document.getElementById('after').src)).arrayBuffer();
        return Array.from(new Uint8Array(b)); }""")
    return bytes(data)


def wait_for_result(page, previous: str = "") -> None:
    """Until the page shows a painted photo other than the one at URL `previous`, loaded."""
    page.wait_for_function("""(prev) => {
        const after = document.getElementById('after');
        return document.getElementById('stage').dataset.result === 'yes' && after.src !== prev && after.complete
            && document.getElementById('progress').hidden; }""", arg=previous, timeout=30_000)


def test_the_page_paints_a_photo_in_a_real_browser(page, server, tmp_path):
    photo, painting = _photo(tmp_path / "photo.png"), _painting(tmp_path / "stripes.png")
    page.set_input_files("#photo-file", str(photo))
    page.wait_for_selector("#photo-info:has-text('120 × 90')")
    assert "shrunk" in page.inner_text("#photo-info") and f"painted at {MAX_SIDE} × 48" in page.inner_text("#photo-info")

    add_painting(page, painting, "test stripes")  # joins the bank, is chosen, and the photo is painted
    assert page.locator(".tile img").first.evaluate("img => img.complete && img.naturalWidth > 0")  # its thumbnail
    wait_for_result(page)
    first = page.get_attribute("#after", "src")

    page.focus("#strength")  # the slider, by keyboard: 100 % -> 60 %
    for _ in range(8):
        page.keyboard.press("ArrowLeft")
    assert page.inner_text("#strength-out") == "60 %"
    wait_for_result(page, first)

    stylize = [u for u in page.requests if "/v1/stylize?" in u]
    assert "strength=0.60" in stylize[-1], stylize
    out = Image.open(io.BytesIO(_result_bytes(page))).convert("RGB")
    src = Image.open(photo).convert("RGB")
    assert out.size == src.size == (120, 90)
    assert np.abs(np.asarray(out, np.int16) - np.asarray(src, np.int16)).mean() > 3, "the result is the photo"
    assert page.get_attribute("#download", "href") == page.get_attribute("#after", "src")
    assert page.get_attribute("#download", "download").endswith(".png")
    assert "Painted in" in page.inner_text("#timing") and page.is_hidden("#message")
    # offline: everything the page loaded came from the service (or from the page's own blobs)
    assert all(u.startswith((server, "blob:", "data:")) for u in page.requests), page.requests

    page.click("#view-compare")  # the before/after view shows both images, split by a slider
    assert page.is_visible("#compare") and page.is_hidden("#pane-after")
    page.click("#view-side")
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000 and not page.errors, page.errors


def test_colours_kept_and_a_second_painting_mixed(page, tmp_path):
    page.set_input_files("#photo-file", str(_photo(tmp_path / "photo.png", 80, 60)))
    add_painting(page, _painting(tmp_path / "a.png"), "first")
    wait_for_result(page)
    add_painting(page, _photo(tmp_path / "b.png", 64, 64), "second")  # chosen; "first" becomes mixable
    wait_for_result(page)
    before = page.get_attribute("#after", "src")
    page.check("#preserve")
    page.select_option("#style2", label="first")
    assert page.is_visible("#mix")
    wait_for_result(page, before)
    query = [u for u in page.requests if "/v1/stylize?" in u][-1]
    assert "preserve_color=true" in query and query.count("style=") == 2 and "%3A0.50" in query, query
    assert page.is_hidden("#message") and not page.errors, page.errors


def test_bad_files_are_named_in_words(page, tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a photo, whatever its name says\n")
    _png_claiming(tmp_path / "huge.png", 20000, 20000)

    page.set_input_files("#style-file", str(bad))  # a painting that is no image: refused by POST v1/styles (415)
    page.wait_for_selector("#message:has-text('not an image the service can read')")
    assert "holiday.jpg" in page.inner_text("#message")

    page.set_input_files("#style-file", str(_painting(tmp_path / "p.png")))
    page.wait_for_selector(".tile input:checked", state="attached")
    page.set_input_files("#photo-file", str(bad))  # sent to POST v1/stylize: 415 again, for the photo
    page.wait_for_selector("#message:has-text('The photo “holiday.jpg” is not an image the service can read')")

    page.set_input_files("#photo-file", str(tmp_path / "huge.png"))  # 20000x20000 claimed: too large (413)
    page.wait_for_selector("#message:has-text('too large')")
    text = page.inner_text("#message")
    assert "Traceback" not in text and "{" not in text and page.is_hidden("#progress")
    assert not page.errors, page.errors


def main(argv=None) -> int:
    """Screenshots of the page with a real model after a real stylization: the desktop one
    (1280x800, the first screenful) for docs, a phone-sized one (390x844, the whole page) to
    look at. PNGs are saved in 256 colours (dithered) to stay small; .jpg at quality 85."""
    import argparse
    import tempfile
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("photo")
    ap.add_argument("painting")
    ap.add_argument("--name", default="The Starry Night", help="the painting's name in the bank")
    ap.add_argument("--model", help="default: the shipped model")
    ap.add_argument("--out", default="page.png", help="the desktop screenshot (.png or .jpg)")
    ap.add_argument("--phone", help="also a phone-sized screenshot of the whole page here")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        tmp = Path(tmp)
        with serving(tmp, *(["--model", a.model] if a.model else []), timeout_s=600) as base:
            for width, height, out, full in [(1280, 800, a.out, False), (390, 844, a.phone, True)]:
                if not out:
                    continue
                ctx = launch(pw, tmp / f"profile-{width}", width, height)
                page = open_page(ctx, base)
                page.set_input_files("#photo-file", a.photo)
                add_painting(page, a.painting, a.name)
                wait_for_result(page)
                page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
                shot = Image.open(io.BytesIO(page.screenshot(full_page=full))).convert("RGB")
                if out.endswith(".png"):  # 256 colours, dithered: a third of the bytes, for docs
                    shot.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG).save(out, optimize=True)
                else:
                    shot.save(out, quality=85, optimize=True)
                print(f"{out}: {width}x{height} ({Path(out).stat().st_size // 1024} KB); {page.inner_text('#timing')}", flush=True)
                assert not page.errors, page.errors
                ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
