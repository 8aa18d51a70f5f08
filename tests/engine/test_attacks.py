"""Bad input from a hostile or careless user, each case with its exact behaviour: the message
(what is named), the exit code, and the files left. Every file here is made by the test."""

import json
import os
import shutil
import stat

import numpy as np
import pytest
from PIL import Image

from stylert.engine.cli import main
from stylert.engine.errors import StyleRTError
from stylert.engine.images import atomic_write_bytes
from stylert.engine.mixing import StyleCode


@pytest.fixture
def work(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "in" / name)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "style.png")
    return tmp_path


def _stylize(work, model, *extra, content=None, out=None):
    return main(["stylize", str(content or work / "in"), "--style", str(work / "style.png"), "--model", str(model),
                 "--out", str(out or work / "out"), "--no-progress", *extra])


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- nothing lost
def test_save_style_never_replaces_a_file(work, tiny_export, capsys):
    (work / "keep.json").write_text("my notes")
    before = (work / "style.png").read_bytes()
    assert _stylize(work, tiny_export, "--save-style", str(work / "keep.json")) == 2
    assert "keep.json" in capsys.readouterr().err and (work / "keep.json").read_text() == "my notes"
    assert _stylize(work, tiny_export, "--save-style", str(work / "style.png"), "--overwrite") == 2
    assert "one of the inputs" in capsys.readouterr().err and (work / "style.png").read_bytes() == before
    assert not (work / "out").exists()  # refused before any work


@pytest.mark.parametrize("where", ["in", "in/sub"])
def test_output_folder_inside_the_input_folder_is_refused(work, tiny_export, capsys, where):
    before = _snapshot(work / "in")
    assert _stylize(work, tiny_export, "--overwrite", out=work / where) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert _snapshot(work / "in") == before


def test_an_output_written_meanwhile_by_another_process_is_kept(work, tiny_export):
    out = work / "out"
    out.mkdir()
    # what another stylize process wrote a moment before this one saves: create-exclusive
    (out / "a.png").write_bytes(b"someone else's result")
    assert _stylize(work, tiny_export, content=work / "in" / "a.png") == 0
    assert (out / "a.png").read_bytes() == b"someone else's result"
    with pytest.raises(FileExistsError):
        atomic_write_bytes(out / "a.png", b"x", exclusive=True)
    assert (out / "a.png").read_bytes() == b"someone else's result"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_engine_folders_are_readable_by_others(tiny_export, tmp_path):
    from stylert.engine.build import stage as B

    old = os.umask(0o022)
    try:
        B.build_engine(B.BuildConfig(export_dir=str(tiny_export), out=str(tmp_path / "e"), precision="fp32",
                                     backend="onnxruntime", calib_count=2, calib_size=64, eval_count=1), log=lambda *a: None)
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "e").stat().st_mode)
    assert mode & 0o055 == 0o055, oct(mode)  # group and others may list and read it


# ----------------------------------------------------------------------------- no silent wrong result
@pytest.mark.parametrize("option,value,named", [
    ("--max-side", "-1", "--max-side"), ("--strength", "1.5", "--strength"), ("--strength", "-0.1", "--strength"),
    ("--tile", "10", "--tile"), ("--overlap", "-1", "--overlap"), ("--quality", "0", "--quality"),
    ("--max-pixels", "0", "--max-pixels"), ("--style-weights", "-1", "weights"),
])
def test_bad_numbers_are_refused_up_front(work, tiny_export, capsys, option, value, named):
    assert _stylize(work, tiny_export, option, value) == 2
    assert named in capsys.readouterr().err
    assert not (work / "out").exists()


def test_calibration_too_small_to_judge_is_refused(tiny_export, tmp_path, capsys):
    assert main(["build-engine", str(tiny_export), "--int8", "--calib-size", "7", "--out", str(tmp_path / "e")]) == 2
    assert "--calib-size 7" in capsys.readouterr().err and not (tmp_path / "e").exists()


@pytest.mark.parametrize("opset", ["5", "17", "999"])
def test_an_opset_the_exporter_cannot_write_is_refused(tiny_checkpoint, tmp_path, capsys, opset):
    # the exporter would silently write opset 18 for an older request, and a manifest that lies
    assert main(["export-onnx", "--checkpoint", str(tiny_checkpoint), "--opset", opset, "--out", str(tmp_path / "x")]) == 2
    assert f"opset {opset} cannot be exported" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_swapped_onnx_file_in_an_export_does_not_run(tiny_export, tmp_path):
    from stylert.engine.runtime import Engine

    copy = tmp_path / "export"
    shutil.copytree(tiny_export, copy)
    shutil.copyfile(copy / "decoder.onnx", copy / "encoder.onnx")  # the wrong graph in the right name
    with pytest.raises(StyleRTError, match="changed since export"):
        Engine.load(copy)


# ----------------------------------------------------------------------------- no traceback
def test_preserve_color_with_a_one_pixel_image(work, tiny_export):
    Image.new("RGB", (1, 1), (200, 30, 30)).save(work / "in" / "dot.png")
    assert _stylize(work, tiny_export, "--preserve-color") == 0
    assert Image.open(work / "out" / "dot.png").size == (1, 1)


@pytest.mark.parametrize("text", [
    "[]", "3", '"x"', "{}", '{"kind": "stylert-style"}', '{"kind": "stylert-style", "mean": [1], "std": [-1]}',
    '{"kind": "stylert-style", "mean": "abc", "std": [1]}', '{"kind": "stylert-style", "mean": [[1]], "std": [[1]]}',
    '{"kind": "stylert-style", "mean": [1, 2], "std": [1]}', '{"kind": "stylert-style", "mean": [NaN], "std": [1]}',
    '{"kind": "stylert-style", "mean": [1e999], "std": [1]}', '{"kind": "stylert-style", "mean": [1], "std": [1], "model": 5}',
    '{"kind": "stylert-style", "mean": [], "std": []}', "not json",
])
def test_malformed_stylecode_files(work, tiny_export, capsys, text):
    with pytest.raises(StyleRTError):
        StyleCode.from_json(text)
    (work / "bad.json").write_text(text)
    rc = main(["stylize", str(work / "in"), "--style", str(work / "bad.json"), "--model", str(tiny_export),
               "--out", str(work / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.json" in err and "Traceback" not in err


def test_a_stylecode_of_another_size_names_the_problem(work, tiny_export, capsys):
    (work / "small.json").write_text(json.dumps({"kind": "stylert-style", "mean": [0.0] * 4, "std": [1.0] * 4}))
    rc = main(["stylize", str(work / "in"), "--style", str(work / "small.json"), "--model", str(tiny_export),
               "--out", str(work / "out"), "--no-progress"])
    assert rc == 2 and "channels" in capsys.readouterr().err


# ----------------------------------------------------------------------------- manifests
@pytest.mark.parametrize("kind", ["export", "engine"])
@pytest.mark.parametrize("damage", ["leave", "absolute", "type", "top"])
def test_a_manifest_cannot_point_outside_its_folder_or_lie_about_types(tiny_export, tmp_path, kind, damage):
    from stylert.engine.build import stage as B
    from stylert.engine.runtime import Engine

    if kind == "export":
        folder = tmp_path / "export"
        shutil.copytree(tiny_export, folder)
        name = "manifest.json"
    else:
        folder = tmp_path / "engine"
        B.build_engine(B.BuildConfig(export_dir=str(tiny_export), out=str(folder), precision="fp32", backend="onnxruntime",
                                     calib_count=2, calib_size=64, eval_count=1), log=lambda *a: None)
        name = "engine.json"
    m = json.loads((folder / name).read_text())
    if damage == "leave":
        m["files"]["encoder"]["path"] = "../../etc/passwd"
    elif damage == "absolute":
        m["files"]["decoder"]["path"] = "/etc/passwd"
    elif damage == "type":
        m["files"]["encoder"]["sha256"] = 12345
    else:
        m = [m]
    (folder / name).write_text(json.dumps(m))
    with pytest.raises(StyleRTError, match="not a valid (export|engine) manifest"):
        Engine.load(folder)


# ----------------------------------------------------------------------------- the Python API
@pytest.fixture(scope="module")
def api(tiny_export):
    from stylert.engine import Engine

    eng = Engine.load(tiny_export)
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 32, 32)).astype(np.float32)
    z, code = eng.encode(x)
    return eng, eng.encode_style(rng.random((32, 32, 3)).astype(np.float32)), x, z, code


API_CASES = {
    "encode NaN": (lambda e, st, x, z, c: e.encode(np.full_like(x, np.nan)), "NaN"),
    "encode 0..255 floats": (lambda e, st, x, z, c: e.encode(x * 255), "outside [0, 1]"),
    "encode empty batch": (lambda e, st, x, z, c: e.encode(x[:0]), "empty batch"),
    "encode a string": (lambda e, st, x, z, c: e.encode("photo.jpg"), "not an array"),
    "encode 3-D": (lambda e, st, x, z, c: e.encode(x[0]), "shape"),
    "encode size not a multiple of 4": (lambda e, st, x, z, c: e.encode(x[:, :, :30, :30]), "multiple of 4"),
    "decode NaN latent": (lambda e, st, x, z, c: e.decode(np.full_like(z, np.nan)), "NaN"),
    "decode infinite offset": (lambda e, st, x, z, c: e.decode(z, np.full_like(c, np.inf)), "non-finite"),
    "decode wrong channels": (lambda e, st, x, z, c: e.decode(z[:, :3]), "latent has shape"),
    "decode empty batch": (lambda e, st, x, z, c: e.decode(z[:0]), "empty batch"),
    "mix NaN latent": (lambda e, st, x, z, c: e.mix(np.full_like(z, np.nan), c, st), "NaN"),
    "mix a path as style": (lambda e, st, x, z, c: e.mix(z, c, "style.jpg"), "not a StyleCode"),
    "mix NaN strength": (lambda e, st, x, z, c: e.mix(z, c, st, strength=float("nan")), "strength"),
    "stylize_batch NaN": (lambda e, st, x, z, c: e.stylize_batch(np.full_like(x, np.nan), st), "NaN"),
    "stylize_batch empty": (lambda e, st, x, z, c: e.stylize_batch(x[:0], st), "empty batch"),
    "stylize_batch a path as style": (lambda e, st, x, z, c: e.stylize_batch(x, "style.jpg"), "not a StyleCode"),
    "stylize float 0..255 image": (lambda e, st, x, z, c: e.stylize(x[0].transpose(1, 2, 0) * 255, st), "divide"),
    "stylize None": (lambda e, st, x, z, c: e.stylize(None, st), "unsupported image type"),
    "stylize None as style": (lambda e, st, x, z, c: e.stylize(x[0].transpose(1, 2, 0), None), "style #0"),
    "stylize NaN weight": (lambda e, st, x, z, c: e.stylize(x[0].transpose(1, 2, 0), [st, st], weights=[float("nan"), 1]), "weights"),
    "encode_style of nothing": (lambda e, st, x, z, c: e.encode_style([]), "no style"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_arguments_are_checked_at_every_stage(api, case):
    call, words = API_CASES[case]
    with pytest.raises(StyleRTError) as e:
        call(*api)
    assert words in str(e.value), str(e.value)
    assert "\nNote:" in str(e.value) or case in ("mix NaN strength",), str(e.value)


def test_a_fifo_where_a_style_or_content_file_belongs_fails_at_once(work, tiny_export, capsys):
    fifo = work / "style.fifo.png"
    os.mkfifo(fifo)  # opened blockingly it would wait for a writer for ever
    assert main(["stylize", str(work / "in"), "--style", str(fifo), "--model", str(tiny_export),
                 "--out", str(work / "out"), "--no-progress"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    os.mkfifo(work / "in" / "c.png")
    assert _stylize(work, tiny_export) == 0  # a folder scan takes regular files only
    assert sorted(p.name for p in (work / "out").iterdir()) == ["a.png", "b.png"]
    assert _stylize(work, tiny_export, content=work / "in" / "c.png") == 2  # named: refused at once
    assert "not a regular file" in capsys.readouterr().err
