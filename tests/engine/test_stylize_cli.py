"""`stylert stylize`: folders and globs, weights, no overwrite, failures reported, grid."""

import json

import numpy as np
import pytest
from PIL import Image

from stylert.engine.cli import main
from stylert.engine.errors import StyleRTError
from stylert.engine.frontend import parse_styles


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for name, (h, w) in {"a.jpg": (40, 56), "sub/b.png": (33, 47), "c.png": (24, 24)}.items():
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(src / name)
    (src / "broken.jpg").write_bytes(b"not an image")
    for s in ("s1.png", "s2.png"):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / s)
    return tmp_path


def test_folder_with_two_weighted_styles_and_grid(files, tiny_export, capsys):
    out = files / "out"
    rc = main(["stylize", str(files / "in"), "--style", f"{files}/s1.png:0.7", "--style", f"{files}/s2.png:0.3",
               "--model", str(tiny_export), "--out", str(out), "--grid", "--no-progress", "--strength", "0.8",
               "--save-style", str(files / "style.json")])
    err = capsys.readouterr().err
    assert rc == 1 and "broken.jpg" in err  # the failure is named, the others are written
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png", "grid.png"]
    assert Image.open(out / "b.png").size == (47, 33)
    assert Image.open(out / "grid.png").size == (3 * 192, 4 * 192)
    assert json.loads((files / "style.json").read_text())["kind"] == "stylert-style"

    # never overwrite unless asked; the saved StyleCode works as a style
    before = (out / "a.png").stat().st_mtime_ns
    rc = main(["stylize", str(files / "in" / "a.jpg"), "--style", str(files / "style.json"), "--model", str(tiny_export),
               "--out", str(out), "--no-progress"])
    assert rc == 0 and (out / "a.png").stat().st_mtime_ns == before and "skipped 1" in capsys.readouterr().out
    rc = main(["stylize", str(files / "in" / "a.jpg"), "--style", str(files / "style.json"), "--model", str(tiny_export),
               "--out", str(out), "--no-progress", "--overwrite", "--format", "webp"])
    assert rc == 0 and (out / "a.webp").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_glob_mask_and_preserve_color(files, tiny_export):
    out = files / "o2"
    Image.new("L", (10, 10), 255).save(files / "mask.png")
    rc = main(["stylize", str(files / "in" / "*.png"), "--style", str(files / "s1.png"), "--mask", str(files / "mask.png"),
               "--preserve-color", "--model", str(tiny_export), "--out", str(out), "--no-progress", "--format", "jpg"])
    assert rc == 0 and [p.name for p in out.iterdir()] == ["c.jpg"]


def test_user_mistakes_exit_2(files, tiny_export, capsys):
    base = ["stylize", str(files / "in"), "--model", str(tiny_export), "--out", str(files / "o3"), "--no-progress"]
    assert main([*base, "--style", str(files / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main([*base, "--style", str(files / "s1.png"), "--style-weights", "1", "2"]) == 2
    assert main(["stylize", str(files / "nothing*.jpg"), "--style", str(files / "s1.png"), "--out", str(files / "o4"),
                 "--model", str(tiny_export)]) == 2


def test_parse_styles():
    assert parse_styles(["a.jpg:0.7", "b.jpg:0.3"], None) == (["a.jpg", "b.jpg"], [0.7, 0.3])
    assert parse_styles(["C:/x.jpg"], None) == (["C:/x.jpg"], None)
    assert parse_styles(["a.jpg", "b.jpg"], [1, 2]) == (["a.jpg", "b.jpg"], [1, 2])
    with pytest.raises(StyleRTError):
        parse_styles(["a.jpg:1", "b.jpg"], None)


def test_a_verb_builds_only_its_own_parser(capsys):
    import argparse

    from stylert.engine.cli import build_parser, verbs

    def listed(p):
        return list(next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices)

    assert listed(build_parser()) == ["train", "evaluate", "export-onnx", "build-engine", "stylize", "serve", "bench",
                                      "loadtest"] == list(verbs())  # the pipeline's order
    assert listed(build_parser("stylize")) == ["stylize"]
    with pytest.raises(SystemExit) as e:  # an unknown verb still gets the whole list
        main(["stylise"])
    assert e.value.code == 2 and "stylize" in capsys.readouterr().err
