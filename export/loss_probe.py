"""The style stage's loss on fixed batches: training pairs against held-out pairs.

    python -m stylert.export.loss_probe MODEL [MODEL ...] [--data ../shared/data] [--batches 6]

Every model is scored on the same crops (a fixed seed): (content, style) pairs drawn from the
training images (content/ and photos/ as contents, style/ and paintings/ as styles) and,
separately, from the held-out files and folders named in the first model's config.json
(`train.holdout`). The gap between the two is how much of what the model learnt is the
training paintings themselves rather than style.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from stylert.engine.images import list_images

from .checkpoint import DEFAULT_MODEL_DIR, load_model
from .style import LossNet, style_step
from .train import ImagePool, TrainConfig, content_batch, held_out, style_weights


def _files(data: Path, folders: tuple[str, ...]) -> list[Path]:
    return [f for d in folders if (data / d).is_dir() for f in list_images(data / d)]


def probe(models: list[str], data: Path, batches: int = 6, crop: int = 128, seed: int = 123,
          holdout: list[str] | None = None, log=print) -> dict:
    """{"train" | "held-out": {model: {loss part: mean over the batches}}}. The loss weights are
    those the first model's style stage was trained with (the shipped model's when it records
    none)."""
    recorded = json.loads((Path(models[0]) / "config.json").read_text()).get("train", {})
    held = set(recorded.get("holdout", []) if holdout is None else holdout)
    if recorded.get("stage") != "style":
        recorded = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["train"]
    known = set(TrainConfig.__dataclass_fields__) - {"model"}
    cfg = TrainConfig(**{k: v for k, v in recorded.items() if k in known})
    weights = style_weights(cfg)
    vaes = {m: load_model(m)[0].eval() for m in models}
    net = LossNet()
    out: dict = {}
    for split in ("train", "held-out"):
        def keep(f, want=split == "held-out"):
            return held_out(f, held) == want

        pool = ImagePool([f for f in _files(data, ("content", "photos")) if keep(f)], crop)
        spool = ImagePool([f for f in _files(data, ("style", "paintings")) if keep(f)], crop)
        for m, vae in vaes.items():
            rng, tot = random.Random(seed), {}  # every model sees the same crops: the rng restarts
            with torch.no_grad():
                for _ in range(batches):
                    torch.manual_seed(seed)  # the ELBO's sample
                    # paired as in training, or the distinct term would compare different photos
                    xc = content_batch(pool, rng, 8, crop, 0.4, cfg.distinct_weight > 0)
                    xs = spool.batch(rng, 8, crop, 0.4, rot90=True)
                    loss, parts = style_step(vae, net, xc, xs, weights, recorded.get("beta", 1e-4), cfg.distinct_finest)
                    for k, v in {"loss": loss.item(), **parts}.items():
                        tot[k] = tot.get(k, 0.0) + v / batches
            out.setdefault(split, {})[m] = tot
            log(f"{split:<9} {m}: " + ", ".join(f"{k} {v:.4f}" for k, v in tot.items()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="a folder with content/ and style/")
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    probe(a.models, a.data, a.batches)


if __name__ == "__main__":
    main()
