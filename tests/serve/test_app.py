"""The HTTP app in-process (FastAPI's test client): every endpoint, every error status, and
that bad input never gives a 500 or stops the replica."""

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient
from stylert.engine.serve.app import PAGE_FILES, create_app
from stylert.engine.serve.service import HTTPError, Result, ServeConfig, Stylizer

from tests.engine.test_inputs import _png_claiming


def _image_bytes(h=37, w=53, seed=0, fmt="PNG", tint=None) -> bytes:
    buf = io.BytesIO()
    a = np.random.default_rng(seed).random((h, w, 3))
    if tint is not None:  # a mostly flat colour: statistics far from noise's
        a = 0.9 * np.asarray(tint) + 0.1 * a
    Image.fromarray((a * 255).astype(np.uint8)).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint, tmp_path_factory):
    st = Stylizer(ServeConfig(model=str(tiny_checkpoint), backend="torch",
                              styles_dir=str(tmp_path_factory.mktemp("bank")), max_body_mb=1, max_pixels=4_000_000))
    st.load(log_fn=lambda *a: None)
    return st


@pytest.fixture(scope="module")
def client(loaded):
    with TestClient(create_app(loaded), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def sid(client):
    r = client.post("/v1/styles?name=noise", content=_image_bytes(64, 64, seed=9))
    assert r.status_code in (200, 201), r.text
    return r.json()["id"]


def _err(r, status, *words):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert "error" in body and body.get("note"), body  # every error says what to do
    for w in words:
        assert w in body["error"] + body.get("note", ""), body
    return body


# ----------------------------------------------------------------------------- health and info
def test_health_ready_info_metrics(client, sid):
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").status_code == 200
    info = client.get("/v1/info").json()
    assert info["backend"] == "torch" and info["limits"]["max_body_mb"] == 1 and info["styles"] >= 1
    client.post(f"/v1/stylize?style={sid}", content=_image_bytes())
    text = client.get("/metrics").text
    for name in ("stylert_request_seconds_bucket", "stylert_queue_seconds", "stylert_batch_size_bucket",
                 'stylert_responses_total{endpoint="/v1/stylize",status="200"}', "stylert_requests_in_flight"):
        assert name in text, name


def test_not_ready_until_loaded(tiny_checkpoint, tmp_path):
    st = Stylizer(ServeConfig(model=str(tiny_checkpoint), backend="torch", styles_dir=str(tmp_path)))
    app = create_app(st)  # not entered: the lifespan (which loads) has not run
    with TestClient(app, raise_server_exceptions=False) as c:
        pass  # entering and leaving runs startup (background load) and shutdown
    st2 = Stylizer(ServeConfig(model=str(tiny_checkpoint), backend="torch", styles_dir=str(tmp_path)))
    c = TestClient(create_app(st2), raise_server_exceptions=False)  # no `with`: no lifespan, never loads
    assert c.get("/healthz").status_code == 200
    r = c.get("/readyz")
    assert r.status_code == 503 and "Retry-After" in r.headers
    _err(c.post("/v1/stylize?style=0123456789abcdef", content=_image_bytes()), 503, "not loaded")


# ----------------------------------------------------------------------------- stylize
def test_stylize_answers_the_image_at_input_size_in_the_asked_format(client, sid):
    raw = _image_bytes(37, 53)
    r = client.post(f"/v1/stylize?style={sid}", content=raw)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (53, 37)
    assert int(r.headers["x-batch-size"]) == 1 and float(r.headers["x-compute-ms"]) > 0
    for q, accept, ctype in [("&format=jpeg", None, "image/jpeg"), ("&format=webp", None, "image/webp"),
                             ("", "image/webp,image/*;q=0.8", "image/webp"), ("&format=jpg", "image/png", "image/jpeg")]:
        r = client.post(f"/v1/stylize?style={sid}{q}", content=raw, headers={"accept": accept} if accept else {})
        assert r.status_code == 200 and r.headers["content-type"] == ctype, (q, accept)
        assert Image.open(io.BytesIO(r.content)).size == (53, 37)


def test_a_large_photo_gives_the_cli_s_pixels_over_http(tiny_export, tmp_path):
    """One plan per image: above max_side both front ends work at max_side and come back to
    full size with the engine's edge-aware upsampling, so the same photo and options give the
    same picture (the README promises it for both)."""
    from stylert.engine.cli import main

    photo, style = tmp_path / "big.png", tmp_path / "s.png"
    photo.write_bytes(_image_bytes(150, 300, seed=1))
    style.write_bytes(_image_bytes(64, 64, seed=9))
    st = Stylizer(ServeConfig(model=str(tiny_export), backend="onnxruntime", styles_dir=str(tmp_path / "bank"), max_side=64))
    st.load(log_fn=lambda *a: None)
    with TestClient(create_app(st), raise_server_exceptions=False) as c:
        sid = c.post("/v1/styles", content=style.read_bytes()).json()["id"]
        r = c.post(f"/v1/stylize?style={sid}&strength=0.8&format=png", content=photo.read_bytes())
    assert r.status_code == 200, r.text
    assert main(["stylize", str(photo), "--style", str(style), "--model", str(tiny_export), "--backend", "onnxruntime",
                 "--max-side", "64", "--strength", "0.8", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    http = np.asarray(Image.open(io.BytesIO(r.content)), np.int16)
    cli = np.asarray(Image.open(tmp_path / "cli" / "big.png"), np.int16)
    assert http.shape == cli.shape == (150, 300, 3)
    assert np.abs(http - cli).max() <= 1
    # the service hands the engine the whole photo (the engine's plan shrinks it and guides the
    # way back with it); the tiny model paints too flat a picture for the pixels alone to tell
    assert st.decode(photo.read_bytes(), "image").size == (300, 150)


def test_stylize_matches_the_runtime(client, loaded, sid):
    raw = _image_bytes(40, 48, seed=3)
    for strength in (0.0, 0.5, 1.0):
        r = client.post(f"/v1/stylize?style={sid}&strength={strength}", content=raw)
        got = np.asarray(Image.open(io.BytesIO(r.content)))
        want = np.asarray(loaded.engine.stylize(Image.open(io.BytesIO(raw)).convert("RGB"), loaded.style(sid), strength=strength))
        assert np.array_equal(got, want), strength


def test_multipart_one_off_style_and_weights(client, loaded, sid):
    content, style = _image_bytes(32, 40, seed=4), _image_bytes(48, 48, seed=5, tint=(1.0, 0.1, 0.0))
    r = client.post("/v1/stylize", files={"image": ("c.png", content), "style_image": ("s.png", style)},
                    data={"strength": "0.7", "format": "jpeg"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    second = client.post("/v1/styles", files={"image": ("s.png", style)}).json()["id"]
    r1 = client.post(f"/v1/stylize?style={sid}:3&style={second}:1", content=content)
    r2 = client.post(f"/v1/stylize?style={sid}&style={second}&weight=3&weight=1", content=content)
    assert r1.status_code == r2.status_code == 200 and r1.content == r2.content
    r3 = client.post(f"/v1/stylize?style={sid}", content=content)
    assert r3.content != r1.content


# ----------------------------------------------------------------------------- the style bank
def test_style_bank_lifecycle_and_persistence(client, loaded, tiny_checkpoint):
    img = _image_bytes(50, 50, seed=11)
    r = client.post("/v1/styles?name=mine", content=img)
    assert r.status_code == 201
    desc = r.json()
    again = client.post("/v1/styles?name=mine", content=img)
    assert again.status_code == 200 and again.json()["id"] == desc["id"]
    assert desc["id"] in [s["id"] for s in client.get("/v1/styles").json()["styles"]]
    one = client.get(f"/v1/styles/{desc['id']}").json()
    assert one["name"] == "mine" and len(one["code"]["mean"]) == desc["channels"]
    # a second replica on the same folder sees it (the folder is the store)
    other = Stylizer(ServeConfig(model=str(tiny_checkpoint), backend="torch", styles_dir=str(loaded.bank.folder)))
    other.load(log_fn=lambda *a: None)
    assert desc["id"] in [s["id"] for s in other.bank.list()]
    assert client.delete(f"/v1/styles/{desc['id']}").status_code == 204
    _err(client.get(f"/v1/styles/{desc['id']}"), 404, "unknown style")
    _err(client.delete(f"/v1/styles/{desc['id']}"), 404)
    with pytest.raises(HTTPError):
        other.style(desc["id"])  # deleted through the first replica: gone for the second too
    _err(client.get("/v1/styles/..%2F..%2Fetc"), 404)
    _err(client.post("/v1/styles?name=" + "x" * 100, content=img), 400, "name")


def test_style_images_thumbnails_and_colour_preservation(client, loaded):
    painting = _image_bytes(300, 200, seed=12, tint=(0.9, 0.2, 0.1))
    desc = client.post("/v1/styles?name=kept", content=painting).json()
    assert desc["image"] is True and [s["image"] for s in client.get("/v1/styles").json()["styles"] if s["id"] == desc["id"]] == [True]
    r = client.get(f"/v1/styles/{desc['id']}/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    kept = Image.open(io.BytesIO(r.content))
    assert max(kept.size) == min(300, loaded.cfg.style_side) and kept.size[0] < kept.size[1]  # the scale it is read at
    assert max(Image.open(io.BytesIO(client.get(f"/v1/styles/{desc['id']}/image?side=32").content)).size) == 32
    _err(client.get(f"/v1/styles/{desc['id']}/image?side=5"), 400, "side")
    _err(client.get("/v1/styles/0123456789abcdef/image"), 404, "unknown style")

    # preserve_color recolours the kept image to each photo (the runtime's own preserve_color)
    content = _image_bytes(40, 48, seed=13)
    r = client.post(f"/v1/stylize?style={desc['id']}&preserve_color=true", content=content)
    assert r.status_code == 200, r.text
    want = loaded.engine.stylize(Image.open(io.BytesIO(content)).convert("RGB"), kept.convert("RGB"), preserve_color=True)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(r.content))), np.asarray(want))
    assert r.content != client.post(f"/v1/stylize?style={desc['id']}", content=content).content
    r = client.post("/v1/stylize", files={"image": ("c.png", content), "style_image": ("s.png", painting)},
                    data={"preserve_color": "1"})
    assert r.status_code == 200, r.text
    _err(client.post(f"/v1/stylize?style={desc['id']}&preserve_color=maybe", content=content), 400, "preserve_color")

    # a style stored without its image (codes from JSON, older banks): no thumbnail, no colour preservation
    code = loaded.engine.encode_style(Image.open(io.BytesIO(_image_bytes(32, 32, seed=14))).convert("RGB"))
    bare, _ = loaded.bank.add(code, "bare")
    assert client.get(f"/v1/styles/{bare}").json()["image"] is False
    _err(client.get(f"/v1/styles/{bare}/image"), 404, "without its image")
    _err(client.post(f"/v1/stylize?style={bare}&preserve_color=true", content=content), 400, "colours cannot be preserved")
    assert client.delete(f"/v1/styles/{desc['id']}").status_code == 204
    assert not (loaded.bank.folder / f"{desc['id']}.jpg").exists()


def test_the_page_is_served_at_the_root_and_under_a_prefix(loaded):
    from fastapi import FastAPI

    outer = FastAPI()
    outer.mount("/style", create_app(loaded))
    # no `with`: no lifespan, whose shutdown would mark the shared stylizer not ready
    c, m = TestClient(create_app(loaded)), TestClient(outer)
    for client, root in ((c, ""), (m, "/style")):
        r = client.get(root + "/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert 'src="page/page.js"' in r.text and 'href="page/page.css"' in r.text  # relative: any prefix works
        for name, ctype in (("page.js", "text/javascript"), ("page.css", "text/css")):
            r = client.get(f"{root}/page/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(ctype) and len(r.content) > 1000
    assert m.get("/style", follow_redirects=False).status_code in (307, 308)  # to /style/
    _err(c.get("/page/app.py"), 404, "page")
    _err(c.get("/page/index.html"), 404)
    # every file of the page is served; it uses the public API only, and only endpoints that exist
    folder = Path(create_app.__code__.co_filename).parent / "page"
    assert {f.name for f in folder.iterdir()} == set(PAGE_FILES)
    js = (folder / "page.js").read_text()
    paths = {r.path for r in create_app(loaded).routes}
    for used in ("v1/info", "v1/styles", "v1/stylize", "v1/styles/{sid}/image"):
        assert "/" + used in paths and used.replace("{sid}", "${s.id}") in js, used
    assert "http://" not in js and "https://" not in js  # nothing fetched from elsewhere


def test_bank_skips_bad_files(loaded, tiny_checkpoint, tmp_path):
    (tmp_path / "0123456789abcdef.json").write_text("{not json")
    (tmp_path / "fedcba9876543210.json").write_text(json.dumps({"code": {"kind": "stylert-style", "mean": [1.0], "std": [-1.0]}}))
    st = Stylizer(ServeConfig(model=str(tiny_checkpoint), backend="torch", styles_dir=str(tmp_path)))
    st.load(log_fn=lambda *a: None)
    assert st.bank.list() == []


# ----------------------------------------------------------------------------- errors
def test_bad_requests_get_clear_4xx_never_500(client, sid, tmp_path):
    good = _image_bytes()
    _err(client.post(f"/v1/stylize?style={sid}"), 400, "no content image")
    _err(client.post(f"/v1/stylize?style={sid}", content=b"this is not an image"), 415, "not an image", "HEIC")
    _err(client.post(f"/v1/stylize?style={sid}", content=good[: len(good) // 2]), 400, "could not be decoded")
    _png_claiming(tmp_path / "bomb.png", 20000, 20000)
    _err(client.post(f"/v1/stylize?style={sid}", content=(tmp_path / "bomb.png").read_bytes()), 413, "downscale")
    _err(client.post(f"/v1/stylize?style={sid}", content=b"\0" * (1024 * 1024 + 1)), 413, "over the limit")
    _err(client.post("/v1/stylize?style=0123456789abcdef", content=good), 404, "unknown style")
    _err(client.post("/v1/stylize", content=good), 400, "no style")
    for q in ("strength=2", "strength=nan", "strength=abc", "strength=-0.1"):
        _err(client.post(f"/v1/stylize?style={sid}&{q}", content=good), 400, "strength")
    _err(client.post(f"/v1/stylize?style={sid}&weight=1&weight=2", content=good), 400, "weight")
    _err(client.post(f"/v1/stylize?style={sid}&weight=inf", content=good), 400, "finite")
    _err(client.post(f"/v1/stylize?style={sid}:-1", content=good), 400, "weights")
    _err(client.post(f"/v1/stylize?style={sid}&format=bmp", content=good), 400, "format")
    _err(client.post(f"/v1/stylize?style={sid}&quality=0", content=good), 400, "quality")
    _err(client.post(f"/v1/stylize?style={sid}", content=good, headers={"x-timeout-s": "-3"}), 400, "X-Timeout-S")
    _err(client.post(f"/v1/stylize?style={sid}", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}), 400)
    _err(client.post("/v1/stylize", files={"other": ("a.png", good)}), 400, "unexpected file part")
    _err(client.post("/v1/styles", content=b""), 400, "no style image")
    # after all that the replica still works
    assert client.post(f"/v1/stylize?style={sid}", content=good).status_code == 200


def test_deadline_gives_504_and_overload_503(loaded, sid):
    gate = asyncio.Event()

    async def slow(job):
        await gate.wait()
        return Result(error=HTTPError(500, "unreachable"))

    async def scenario():
        import httpx

        loaded.cfg.max_in_flight, loaded.cfg.timeout_s = 2, 0.5
        try:
            app = create_app(loaded, submit=slow)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
                reqs = [c.post(f"/v1/stylize?style={sid}", content=_image_bytes()) for _ in range(5)]
                answers = await asyncio.gather(*reqs)
                health = await c.get("/healthz")
        finally:
            loaded.cfg.max_in_flight, loaded.cfg.timeout_s = 32, 60.0
        return answers, health

    answers, health = asyncio.run(scenario())
    codes = sorted(r.status_code for r in answers)
    assert codes == [503, 503, 503, 504, 504], codes
    for r in answers:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and "overloaded" in r.json()["error"]
        else:
            assert "deadline" in r.json()["error"]
    assert health.status_code == 200  # health answers even when overloaded


def test_without_ray_concurrent_requests_are_batched(loaded, sid):
    import httpx

    async def scenario():
        app = create_app(loaded)  # no submit: the in-process micro-batcher
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            rs = await asyncio.gather(*[c.post(f"/v1/stylize?style={sid}", content=_image_bytes(32, 32, seed=i))
                                        for i in range(6)])
            info = (await c.get("/v1/info")).json()
        return rs, info

    loaded.cfg.batch_wait_ms = 200.0
    try:
        rs, info = asyncio.run(scenario())
    finally:
        loaded.cfg.batch_wait_ms = 10.0
    assert [r.status_code for r in rs] == [200] * 6
    assert max(int(r.headers["x-batch-size"]) for r in rs) > 1
    assert "micro-batcher" in info["batching"]["mode"]
    for i, r in enumerate(rs):  # each answer is its own image's, batched or not
        want = loaded.engine.stylize(Image.open(io.BytesIO(_image_bytes(32, 32, seed=i))).convert("RGB"), loaded.style(sid))
        got = np.asarray(Image.open(io.BytesIO(r.content))).astype(int)
        assert np.abs(got - np.asarray(want).astype(int)).max() <= 1  # batch size may change float rounding


def test_config_refuses_nonsense():
    from stylert.engine.errors import StyleRTError

    for bad in (dict(max_body_mb=0), dict(max_batch_size=0), dict(timeout_s=-1), dict(default_format="gif"), dict(quality=101)):
        with pytest.raises(StyleRTError, match="out of range"):
            ServeConfig(**bad)
