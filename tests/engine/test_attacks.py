"""Bad input from a hostile or careless user, each case with its exact behaviour: the message
(what is named), the exit code, and the files left. Every file here is made by the test."""

import dataclasses
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


# ----------------------------------------------------------------------------- one run's outputs never collide
# One namer (engine/outputs.py, RunOutputs): the first output to ask for a name keeps it, a later
# one of the same run gets NAME_2; "skipped" is only ever a file that was there before the run.
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_content_named_grid_and_the_grid_sheet_are_both_kept(work, tiny_export, capsys, overwrite):
    shutil.copy(work / "in" / "a.png", work / "in" / "grid.png")
    assert _stylize(work, tiny_export, "--grid", *(["--overwrite"] if overwrite else [])) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in (work / "out").iterdir()) == ["a.png", "b.png", "grid.png", "grid_2.png"]
    assert Image.open(work / "out" / "grid.png").size == (2 * 192, 4 * 192)  # the sheet: 3 contents x 1 style
    assert Image.open(work / "out" / "grid_2.png").size == (32, 24)  # the content grid.png's result
    assert "wrote 4 file(s)" in out and "skipped" not in out and "grid.png -> grid_2.png" in out


def test_one_name_from_two_folders_and_two_formats_each_keep_their_result(work, tiny_export, capsys):
    (work / "in2").mkdir()
    Image.new("RGB", (40, 16), (9, 99, 200)).save(work / "in2" / "a.png")
    Image.open(work / "in" / "b.png").save(work / "in" / "a.jpg", quality=95)
    args = ["stylize", str(work / "in"), str(work / "in2"), "--style", str(work / "style.png"), "--model", str(tiny_export),
            "--out", str(work / "out"), "--no-progress"]
    for extra in (["--overwrite"], []):
        assert main(args + extra) == 0
        out = capsys.readouterr().out
        # in/a.jpg, in/a.png, in/b.png, in2/a.png: none replaces another, with or without --overwrite
        assert sorted(p.name for p in (work / "out").iterdir()) == ["a.png", "a_2.png", "a_3.png", "b.png"]
        assert Image.open(work / "out" / "a_3.png").size == (40, 16)
    assert "wrote 0 file(s)" in out and "skipped 4 that existed before this run" in out  # the rerun: counts right


def test_frames_of_one_name_in_two_formats_both_kept(work, tiny_export):
    pytest.importorskip("av", reason="--frames runs the video pipeline: pip install 'stylert[video]'")
    seq = work / "seq"
    seq.mkdir()
    shutil.copy(work / "in" / "a.png", seq / "0001.png")
    Image.open(work / "in" / "b.png").save(seq / "0001.jpg", quality=95)
    assert main(["stylize", str(seq), "--frames", "--style", str(work / "style.png"), "--model", str(tiny_export),
                 "--out", str(work / "out"), "--no-progress", "--overwrite"]) == 0
    assert sorted(p.name for p in (work / "out" / "seq").iterdir()) == ["0001.png", "0001_2.png"]


def test_save_style_inside_out_keeps_its_name_and_never_lands_on_an_image(work, tiny_export, capsys):
    out = work / "out"
    assert _stylize(work, tiny_export, "--save-style", str(out / "a.png")) == 2  # JSON where an image belongs
    assert "names an image or video file" in capsys.readouterr().err and not out.exists()
    assert _stylize(work, tiny_export, "--save-style", str(out / "code.json")) == 0  # --out is made by the run
    assert StyleCode.from_json((out / "code.json").read_text()).channels > 0


@pytest.mark.parametrize("where,words", [("missing/code.json", "does not exist"), ("", "is a folder"), ("out", "--out")])
def test_save_style_into_a_missing_folder_or_onto_a_folder(work, tiny_export, capsys, where, words):
    target = work / where if where else work / "in"  # "out": the run's --out, made by the run
    assert _stylize(work, tiny_export, "--save-style", str(target)) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not (work / "out").exists()


# ----------------------------------------------------------------------------- style codes
def _shipped_like_code(eng):
    """An encoded code of this engine's model (a real one, then edited by the tests)."""
    return eng.encode_style(np.random.default_rng(3).random((48, 48, 3)).astype(np.float32))


def test_codes_just_inside_the_old_limit_and_impossible_palettes_are_refused(api):
    eng, st = api[0], api[1]
    c = eng.contract
    assert c.style_ranges and len(c.style_ranges) == len(c.style_channels)  # the export measured them
    k = st.channels
    cases = {
        "means at 0.99 x the old limit": StyleCode(np.full(k, 0.99 * c.style_limit), st.std),
        "stds at 0.99 x the old limit": StyleCode(st.mean, np.full(k, 0.99 * c.style_limit)),
        "a std below sqrt(EPS)": StyleCode(st.mean, np.r_[st.std[:-1], 1e-4]),
        "a feature mean below 0 (after ReLU)": StyleCode(np.r_[st.mean[:-1], -0.5], st.std),
        "every latent mean at 2x its level's largest RMS": StyleCode(
            np.r_[np.full(c.latent_channels, 2 * c.style_ranges[0][2]), st.mean[c.latent_channels:]], st.std),
    }
    for name, code in cases.items():
        with pytest.raises(StyleRTError, match="outside the range") as e:
            eng.stylize(np.zeros((16, 16, 3), np.float32), code)
        assert "\nNote: Re-encode" in str(e.value), name
    with pytest.raises(StyleRTError, match="palette"):
        StyleCode(st.mean, st.std, rgb_mean=[-2.0, 0.5, 0.5], rgb_cov=np.eye(3) * 0.01)
    with pytest.raises(StyleRTError, match="palette"):  # a variance no pixels in [0, 1] can have
        StyleCode(st.mean, st.std, rgb_mean=[0.5, 0.5, 0.5], rgb_cov=np.eye(3) * 0.3)


def test_codes_the_encoder_gives_and_their_mixes_pass_the_value_check(api):
    eng, st = api[0], api[1]
    rng = np.random.default_rng(5)
    styles = [np.zeros((32, 32, 3), np.float32), np.ones((32, 32, 3), np.float32), rng.random((64, 48, 3)).astype(np.float32),
              np.kron(rng.random((4, 4, 3)), np.ones((16, 16, 1))).astype(np.float32)]
    codes = [eng.encode_style(s) for s in styles] + [st]
    from stylert.engine.mixing import combine

    for code in codes + [combine(codes, rng.random(len(codes)) + 0.1)]:
        assert code.out_of_range(eng.contract) is None
        eng.check_codes([StyleCode.from_json(code.to_json())])  # a saved code reads back and runs


@pytest.mark.parametrize("data,words", [
    (b'{"kind": "stylert-style", "mean": [1], "std": [1], "sources": ["\xff\xfe"]}', "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"kind": "stylert-style", "mean": [true], "std": [1]}', "flat list of numbers"),
])
def test_stylecode_bytes_that_are_not_utf8_json_or_numbers(work, tiny_export, capsys, data, words):
    with pytest.raises(StyleRTError, match=words):
        StyleCode.from_json(data)
    (work / "bad.json").write_bytes(data)
    rc = main(["stylize", str(work / "in"), "--style", str(work / "bad.json"), "--model", str(tiny_export),
               "--out", str(work / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.json" in err and words in err and "Traceback" not in err


def test_a_fifo_or_a_huge_file_as_a_stylecode_fails_at_once(work, tiny_export, capsys):
    os.mkfifo(work / "x.json")  # read as a StyleCode it would wait for a writer for ever
    (work / "huge.json").write_bytes(b" " * (2 << 20))
    (work / "dir.json").mkdir()
    for name, words in (("x.json", "not a regular file"), ("huge.json", "over the"), ("dir.json", "a folder")):
        assert main(["stylize", str(work / "in"), "--style", str(work / name), "--model", str(tiny_export),
                     "--out", str(work / "out"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert name in err and words in err


# ----------------------------------------------------------------------------- build-engine, manifests, caches
def test_build_engine_out_naming_a_file(tiny_export, tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    assert main(["build-engine", str(tiny_export), "--fp32", "--backend", "onnxruntime", "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "Traceback" not in err and (tmp_path / "f").read_text() == "mine"


@pytest.mark.parametrize("field,value", [("downsample", 8), ("downsample", 2), ("latent_channels", 3)])
def test_an_edited_contract_in_a_manifest_is_refused_with_the_remedy(tiny_export, tmp_path, field, value):
    from stylert.engine.runtime import Engine

    copy = tmp_path / "export"
    shutil.copytree(tiny_export, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["contract"][field] = value
    if field == "latent_channels":
        m["contract"]["style_channels"][0] = value
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StyleRTError, match=f"exported with {field}|manifest.json") as e:
        eng = Engine.load(copy)
        eng.stylize(np.zeros((32, 32, 3), np.float32), np.zeros((32, 32, 3), np.float32))
    assert "re-export" in str(e.value)


def test_a_graph_that_disagrees_with_its_contract_is_an_error_not_an_assert(tiny_export):
    from stylert.engine.runtime import Engine

    eng = Engine.load(tiny_export)
    eng.runner.contract = dataclasses.replace(eng.contract, downsample=eng.contract.downsample * 2)  # what a backend trusts
    with pytest.raises(StyleRTError, match="promises") as e:
        eng.runner.encode(np.zeros((1, 3, 32, 32), np.float32))
    assert "manifest" in str(e.value)


def test_an_openvino_engine_of_a_model_whose_style_head_is_still_zero_loads(tiny_checkpoint, tmp_path):
    pytest.importorskip("openvino", reason="the openvino backend needs OpenVINO: pip install 'stylert[openvino]'")
    import torch

    from stylert.engine.build import stage as B
    from stylert.engine.runtime import Engine
    from stylert.export.checkpoint import load_model, save_model
    from stylert.export.onnx_export import export_onnx

    vae, _ = load_model(tiny_checkpoint)
    torch.nn.init.zeros_(vae.decoder.style.net[-1].weight)  # as `train --stage vae` leaves it
    save_model(vae, tmp_path / "vae")
    export_onnx(tmp_path / "export", checkpoint=tmp_path / "vae", log=lambda *a: None, verify_outputs=False)
    B.build_engine(B.BuildConfig(export_dir=str(tmp_path / "export"), out=str(tmp_path / "e"), precision="fp32",
                                 backend="openvino", calib_count=2, calib_size=64, eval_count=1), log=lambda *a: None)
    eng = Engine.load(tmp_path / "e")  # passed its gate: it must load (OpenVINO names `style` "mul" too)
    assert eng.stylize(np.zeros((16, 16, 3), np.float32), np.ones((16, 16, 3), np.float32)).shape == (16, 16, 3)


def test_another_exports_engine_in_the_cache_slot_is_not_used(tiny_export, tmp_path, monkeypatch):
    pytest.importorskip("openvino", reason="the openvino backend needs OpenVINO: pip install 'stylert[openvino]'")
    import stylert.engine.backends.openvino.runner as ovr
    import stylert.engine.build as build
    from stylert.engine import frontend
    from stylert.engine.artifacts import read_export

    m = read_export(tiny_export)
    slot = tmp_path / "cache" / "engines" / (m["files"]["encoder"]["sha256"][:12] + m["files"]["decoder"]["sha256"][:12])
    build.build_engine(build.BuildConfig(str(tiny_export), precision="fp32", backend="openvino", out=str(slot / "openvino-bf16"),
                                         calib_count=2, calib_size=64, eval_count=1), log=lambda *a: None)
    # what another model's engine, copied into this export's slot, records as its source
    man = json.loads((slot / "openvino-bf16" / "engine.json").read_text())
    man["source"]["encoder"]["sha256"] = "0" * 64
    (slot / "openvino-bf16" / "engine.json").write_text(json.dumps(man))
    monkeypatch.setattr(ovr, "native_bf16", lambda *a, **k: True)  # the CPUs on which the auto rule takes the cache
    built, said = [], []
    monkeypatch.setattr(build, "build_engine", lambda cfg, log=None: built.append(cfg))
    frontend.fastest_engine(tiny_export, tmp_path / "cache", log=said.append)
    assert built and built[0].export_dir == str(tiny_export)  # rebuilt from this export, not used
    assert any("not this model's to run" in s and "changed since the build" in s for s in said), said


def test_a_cache_folder_that_cannot_be_written_runs_without_it(tiny_export, tmp_path, monkeypatch):
    pytest.importorskip("openvino", reason="the openvino backend needs OpenVINO: pip install 'stylert[openvino]'")
    from stylert.engine.artifacts import CacheWarning
    from stylert.engine.runtime import Engine

    (tmp_path / "cache").write_text("a file where the cache folder belongs")
    monkeypatch.setenv("STYLERT_CACHE", str(tmp_path / "cache"))
    with pytest.warns(CacheWarning, match="cannot be written"):
        eng = Engine.load(tiny_export, backend="openvino")
    assert eng.stylize(np.zeros((16, 16, 3), np.float32), np.ones((16, 16, 3), np.float32)).shape == (16, 16, 3)


# ----------------------------------------------------------------------------- more of the Python API
@pytest.mark.parametrize("call,words", [
    (lambda e, x: e.interpolate(x, x, []), "no points"),
    (lambda e, x: e.interpolate(x, x, [float("nan")]), "non-finite"),
    (lambda e, x: e.interpolate(x, x, 0.5), "not a list of numbers"),
    (lambda e, x: e.stylize(x, x, strength=None), "not a number"),
    (lambda e, x: e.stylize(x, x, strength="0.5"), "not a number"),
])
def test_api_values_that_used_to_raise_raw_exceptions(api, call, words):
    x = np.random.default_rng(2).random((16, 16, 3)).astype(np.float32)
    with pytest.raises(StyleRTError, match=words) as e:
        call(api[0], x)
    assert "\nNote:" in str(e.value)


def test_two_videos_of_one_name_from_two_folders_both_kept(work, tiny_export, capsys):
    pytest.importorskip("av", reason="video files need PyAV: pip install 'stylert[video]'")
    from .test_video import make_clip

    for d, n in (("v1", 6), ("v2", 8)):
        (work / d).mkdir()
        make_clip(work / d / "clip.mp4", n=n, audio=False, cut_at=None)
    assert main(["stylize", str(work / "v1"), str(work / "v2"), "--style", str(work / "style.png"), "--model", str(tiny_export),
                 "--out", str(work / "out"), "--no-progress", "--overwrite"]) == 0
    assert sorted(p.name for p in (work / "out").iterdir()) == ["clip.mp4", "clip_2.mp4"]
    import av

    with av.open(str(work / "out" / "clip_2.mp4")) as c:  # v2's clip, not replaced by v1's nor replacing it
        assert sum(1 for _ in c.decode(video=0)) == 8
    assert "wrote 2 file(s)" in capsys.readouterr().out
