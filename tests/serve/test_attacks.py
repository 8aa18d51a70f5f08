"""The HTTP service under hostile clients and files, on a real uvicorn server on loopback:
stalled uploads, a style bank file that would block, media types in other capitals, absurd
style codes. Each case: the status and message, and the service still serving others."""

import http.client
import json
import os
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from stylert.engine.serve.app import create_app  # noqa: E402
from stylert.engine.serve.service import ServeConfig, Stylizer  # noqa: E402

from .test_app import _image_bytes  # noqa: E402


@pytest.fixture(scope="module")
def server(tiny_export, tmp_path_factory):
    import uvicorn

    bank = tmp_path_factory.mktemp("bank")
    st = Stylizer(ServeConfig(model=str(tiny_export), backend="onnxruntime", styles_dir=str(bank), max_in_flight=4,
                              read_timeout_s=1.0, max_body_mb=1))
    st.load(log_fn=lambda *a: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(st), host="127.0.0.1", port=port, log_level="critical",
                                        timeout_keep_alive=2))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(base + "/readyz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    sid = httpx.post(base + "/v1/styles", content=_image_bytes(48, 48, seed=3)).json()["id"]
    yield {"base": base, "port": port, "sid": sid, "bank": bank, "stylizer": st}
    srv.should_exit = True
    t.join(timeout=10)


def _stall(port: int, declared: int = 100_000) -> socket.socket:
    """A client that sends its headers and a few bytes of body, then goes quiet."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"POST /v1/stylize HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode() + b"\x89PNG")
    return s


def _response(s: socket.socket) -> str:
    """The whole HTTP response on s as text (status line, blank line, body), read by http.client:
    TCP may hand the headers and the body over in separate reads. "" if none came."""
    r = http.client.HTTPResponse(s)
    try:
        r.begin()
        return f"HTTP/1.1 {r.status} {r.reason}\r\n\r\n" + r.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return ""


def test_stalled_uploads_do_not_take_slots_and_get_408(server):
    base, sid = server["base"], server["sid"]
    idle = [_stall(server["port"]) for _ in range(6)]  # more than max_in_flight (4)
    try:
        time.sleep(0.3)
        # a slot is taken once a body has arrived: while six uploads stall, others are served
        t0 = time.monotonic()
        for _ in range(3):
            r = httpx.post(f"{base}/v1/stylize?style={sid}", content=_image_bytes(), timeout=10)
            assert r.status_code == 200, r.text
        assert time.monotonic() - t0 < 0.9, "served only after the stalled uploads timed out"
        answers = []
        for s in idle:
            s.settimeout(5)
            answers.append(_response(s))
        assert all(" 408 " in a.split("\r\n")[0] for a in answers), answers
        body = answers[0].split("\r\n\r\n", 1)[1]
        assert "did not arrive" in json.loads(body)["error"] and json.loads(body)["note"]
    finally:
        for s in idle:
            s.close()
    assert httpx.get(base + "/healthz").status_code == 200


def test_uploads_arriving_are_bounded_and_then_freed(server):
    from stylert.engine.serve.app import _Slots

    n = 4 * _Slots.UPLOADS_PER_SLOT  # max_in_flight 4
    idle = [_stall(server["port"]) for _ in range(n)]
    try:
        time.sleep(0.3)
        r = httpx.post(f"{server['base']}/v1/stylize?style={server['sid']}", content=_image_bytes(), timeout=10)
        assert r.status_code == 503 and "uploads arriving" in r.json()["error"], r.text
        assert r.headers["Retry-After"] and r.json()["note"]
        assert httpx.get(server["base"] + "/healthz", timeout=5).status_code == 200
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 10  # the closed uploads free their places
    while True:
        r = httpx.post(f"{server['base']}/v1/stylize?style={server['sid']}", content=_image_bytes(), timeout=10)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text


def test_a_fifo_in_the_style_bank_does_not_block_the_server(server):
    fifo = server["bank"] / "0123456789abcdef.json"
    os.mkfifo(fifo)  # a reader that opened it blockingly would wait for a writer for ever
    try:
        t0 = time.monotonic()
        r = httpx.post(f"{server['base']}/v1/stylize?style=0123456789abcdef", content=_image_bytes(), timeout=10)
        assert r.status_code == 404 and time.monotonic() - t0 < 5
        assert httpx.get(server["base"] + "/v1/styles", timeout=10).status_code == 200
        assert httpx.get(server["base"] + "/healthz", timeout=5).status_code == 200
    finally:
        fifo.unlink()


def test_multipart_in_other_capitals_is_a_form(server):
    files = {"image": ("c.png", _image_bytes())}
    req = httpx.Request("POST", f"{server['base']}/v1/stylize?style={server['sid']}", files=files)
    body = req.read()
    ctype = req.headers["content-type"].replace("multipart/form-data", "Multipart/Form-Data")
    r = httpx.post(f"{server['base']}/v1/stylize?style={server['sid']}", content=body, headers={"content-type": ctype})
    assert r.status_code == 200, r.text


def test_absurd_style_statistics_are_refused_not_rendered(server):
    from stylert.engine.mixing import StyleCode

    st = server["stylizer"]
    k = st.engine.contract.style_size // 2
    assert st.engine.contract.style_limit > 0
    code = StyleCode(np.full(k, 50.0), np.full(k, 1e6), model=st.engine.contract.checkpoint_sha256)
    sid, _ = st.bank.add(code, "absurd")
    r = httpx.post(f"{server['base']}/v1/stylize?style={sid}", content=_image_bytes())
    assert r.status_code == 400 and "outside" in r.json()["error"] and r.json()["note"], r.text
