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


# ----------------------------------------------------------------------------- hostile pass 3 (issue 36)
@pytest.mark.parametrize("option,value,words", [
    ("--dec-dilations", "0", "--dec-dilations needs at least one block"), ("--widths", "0 0 0", "--widths [0, 0, 0]"),
    ("--latent-channels", "0", "--latent-channels 0"), ("--style-kernels", "-1", "--style-kernels must be"),
    ("--up-kernels", "-2", "--up-kernels must be 0 (none) or more, not -2"),
])
def test_model_options_the_model_refuses_are_clear_errors(tmp_path, capsys, option, value, words):
    data = _images(tmp_path / "data", n=2)
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--no-progress", option, *value.split()]) == 2
    err = capsys.readouterr().err
    assert words in err and "Note:" in err and "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"model": {"widths": "x"}}'])
def test_a_damaged_config_json_on_resume_is_a_clear_error(tmp_path, capsys, damage):
    data = _images(tmp_path / "data", n=2)
    assert _train(data, tmp_path / "run", "--steps", "2", "--checkpoint-every", "1") == 0
    (tmp_path / "run" / "last" / "config.json").write_bytes(damage)
    capsys.readouterr()
    assert _train(data, tmp_path / "run", "--steps", "4") == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "--no-resume --overwrite" in err and "Traceback" not in err


def test_resuming_a_distill_run_with_another_teacher_is_refused(tmp_path, tiny_checkpoint):
    from ..conftest import TINY, vgg_weights

    vgg_weights()
    import shutil

    from stylert.engine.errors import StyleRTError
    from stylert.export.checkpoint import load_model, save_model
    from stylert.export.model import VAEConfig
    from stylert.export.train import train

    from .test_train import _cfg

    data, styles = _images(tmp_path / "data", n=2), _images(tmp_path / "styles", n=2)
    other = tmp_path / "other"
    vae = load_model(tiny_checkpoint)[0]
    vae.decoder.inp.weight.data.mul_(0.5)  # another teacher of the same design
    save_model(vae, other)
    shutil.copytree(tiny_checkpoint, tmp_path / "same")  # the same teacher at another path: not another one

    def run(init, **kw):
        return train(_cfg(tmp_path, data, stage="distill", init=str(init), styles=[str(styles)], steps=3, checkpoint_every=1,
                          batch=2, model=VAEConfig(**{**TINY, "dec_dilations": (2,)}), **kw), progress=False)

    run(tiny_checkpoint, stop_after=1)
    with pytest.raises(StyleRTError, match="another teacher") as e:
        run(other)
    assert str(tiny_checkpoint) in str(e.value) and "--no-resume --overwrite" in str(e.value)
    assert run(tmp_path / "same")["steps"] == 3  # the same weights: resumed to the end


def test_evaluate_never_writes_its_report_over_an_input_or_a_file(tiny_checkpoint, tmp_path, capsys):
    img = _images(tmp_path / "data", n=2)
    a, b = img / "img0.png", img / "img1.png"
    before = a.read_bytes()
    # `--json a.png b.png`: argparse takes a.png as the report's name
    assert main(["evaluate", "--json", str(a), str(b), "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "names an image or video file" in capsys.readouterr().err and a.read_bytes() == before
    assert main(["evaluate", str(b), "--json", str(b.with_suffix(".json")), "--checkpoint", str(tiny_checkpoint)]) == 0
    report = b.with_suffix(".json").read_bytes()
    for extra, words in (([], "would replace an existing file"), (["--json", str(tmp_path / "no" / "r.json")], "does not exist")):
        args = ["evaluate", str(b), "--json", str(b.with_suffix(".json")), "--checkpoint", str(tiny_checkpoint), *extra]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
    assert b.with_suffix(".json").read_bytes() == report
    assert main(["evaluate", str(b), "--json", str(b.with_suffix(".json")), "--checkpoint", str(tiny_checkpoint),
                 "--overwrite"]) == 0


def test_the_style_report_refuses_a_folder_of_files_and_contents_of_one_name(tiny_checkpoint, tmp_path, capsys):
    img = _images(tmp_path / "data", n=2)
    (tmp_path / "data2").mkdir()
    (tmp_path / "data2" / "img0.png").write_bytes((img / "img0.png").read_bytes())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("mine")
    base = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--styles", str(img / "img1.png"), "--opt-steps", "0"]
    assert main([*base[:1], str(img / "img0.png"), *base[1:], "--out", str(tmp_path / "out")]) == 2
    assert "already holds files" in capsys.readouterr().err and (tmp_path / "out" / "mine.txt").read_text() == "mine"
    assert main([*base[:1], str(img / "img0.png"), str(tmp_path / "data2" / "img0.png"), *base[1:],
                 "--out", str(tmp_path / "new")]) == 2
    assert "share the name 'img0'" in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert main([*base[:1], str(img), *base[1:], "--out", str(img / "report")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert main([*base[:1], str(img / "img0.png"), *base[1:], "--out", str(tmp_path / "new"),
                 "--json", str(tmp_path / "new" / "report.json")]) == 2  # the report's own report.json
    assert "inside the style report's --out" in capsys.readouterr().err and not (tmp_path / "new").exists()
