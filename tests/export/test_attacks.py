"""Bad input to the PyTorch verbs (`train`, `evaluate`, `export-onnx`), each case with its exact
behaviour: exit code 2 and a message naming the value, nothing lost, no traceback. Every file
here is made by the test."""

import json
import os

import pytest

pytest.importorskip("torch")

from stylert.engine.cli import main  # noqa: E402

from .test_train import _images  # noqa: E402


def _train(data, out, *extra):
    return main(["train", str(data), "--out", str(out), "--no-progress", "--latent-channels", "4", "--widths", "4", "8", "8",
                 "--crop", "32", "--batch", "2", *extra])


@pytest.mark.parametrize("option,value", [
    ("--steps", "0"), ("--steps", "-5"), ("--batch", "0"), ("--crop", "30"), ("--crop", "8"), ("--lr", "0"),
    ("--lr", "nan"), ("--beta", "-1"), ("--checkpoint-every", "0"), ("--threads", "-2"), ("--stop-after", "0"),
    ("--style-jitter", "1.5"), ("--textures", "-1"), ("--gram-weight", "inf"), ("--content-paintings", "2"),
])
def test_train_numbers_are_refused_before_any_image_is_read(tmp_path, capsys, option, value):
    data = _images(tmp_path / "data", n=2)
    assert _train(data, tmp_path / "run", option, value) == 2
    err = capsys.readouterr().err
    assert option in err and "Note:" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_finished_run_is_not_replaced_without_overwrite(tmp_path, capsys):
    data = _images(tmp_path / "data", n=2)
    assert _train(data, tmp_path / "run", "--steps", "2", "--checkpoint-every", "1") == 0
    final = (tmp_path / "run" / "final" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert _train(data, tmp_path / "run", "--steps", "2", "--no-resume") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "run" / "final" / "model.safetensors").read_bytes() == final
    assert _train(data, tmp_path / "run", "--steps", "2", "--no-resume", "--overwrite", "--seed", "3") == 0
    assert (tmp_path / "run" / "final" / "model.safetensors").read_bytes() != final


def test_checkpoints_swap_atomically_and_the_previous_one_stays(tmp_path):
    data = _images(tmp_path / "data", n=2)
    assert _train(data, tmp_path / "run", "--steps", "3", "--checkpoint-every", "1") == 0
    last = tmp_path / "run" / "last"
    assert last.is_symlink() and os.readlink(last) == "ckpt-3"
    kept = sorted(p.name for p in (tmp_path / "run").glob("ckpt-*"))
    assert kept == ["ckpt-2", "ckpt-3"]  # the one before stays loadable
    for k in kept:
        meta = json.loads((tmp_path / "run" / k / "config.json").read_text())
        assert {"model.safetensors", "optimizer.safetensors", "config.json"} <= {p.name for p in (tmp_path / "run" / k).iterdir()}
        assert meta["step"] == int(k.split("-")[1])
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_truncated_checkpoint_is_a_clear_error_on_resume(tmp_path, capsys):
    data = _images(tmp_path / "data", n=2)
    assert _train(data, tmp_path / "run", "--steps", "2", "--checkpoint-every", "1") == 0
    w = tmp_path / "run" / "last" / "optimizer.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    capsys.readouterr()
    assert _train(data, tmp_path / "run", "--steps", "4") == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "--no-resume --overwrite" in err and "Traceback" not in err


def test_resuming_another_configuration_is_refused(tmp_path, capsys):
    data = _images(tmp_path / "data", n=2)
    assert _train(data, tmp_path / "run", "--steps", "2", "--checkpoint-every", "1") == 0
    capsys.readouterr()
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--no-progress", "--latent-channels", "8",
                 "--widths", "4", "8", "8", "--crop", "32", "--batch", "2", "--steps", "4"]) == 2
    assert "another model configuration" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["12", "0", "30"])
def test_evaluate_sizes_are_checked(tiny_checkpoint, tmp_path, capsys, size):
    img = _images(tmp_path / "data", n=1)
    assert main(["evaluate", str(img), "--checkpoint", str(tiny_checkpoint), "--size", size]) == 2
    err = capsys.readouterr().err
    assert f"--size {size}" in err and "Traceback" not in err


def test_export_never_replaces_files_without_overwrite(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "my-notes.txt").write_text("mine")
    (out / "other.txt").write_text("also mine")
    assert main(["export-onnx", "--checkpoint", str(tiny_checkpoint), "--out", str(out)]) == 2
    assert "already holds checkpoint" in capsys.readouterr().err
    assert (out / "checkpoint" / "my-notes.txt").read_text() == "mine"
    assert main(["export-onnx", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--overwrite"]) == 0
    assert (out / "other.txt").read_text() == "also mine"  # only an export's own names are replaced
    assert (out / "manifest.json").is_file() and not (out / "checkpoint" / "my-notes.txt").exists()
    (tmp_path / "file").write_text("x")
    assert main(["export-onnx", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err
