"""The style stage's loss on fixed batches: training pairs against held-out pairs.

    python -m stylert.export.loss_probe MODEL [MODEL ...] [--data ../shared/data] [--batches 6]

Every model is scored on the same crops (a fixed seed): (content, style) pairs drawn from the
training images and, separately, from the held-out images named in the first model's
config.json (`train.holdout`). The gap between the two is how much of what the decoder learnt
is the training paintings themselves; the README's "style stage" section quotes it.
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
from .train import ImagePool, TrainConfig, style_weights


def probe(models: list[str], data: Path, batches: int = 6, crop: int = 160, seed: int = 123,
          holdout: list[str] | None = None, log=print) -> dict:
    """{"train" | "held-out": {model: {loss part: mean over the batches}}}. The loss weights are
    those the first model's style stage was trained with (the shipped model's when it records
    none)."""
    recorded = json.loads((Path(models[0]) / "config.json").read_text()).get("train", {})
    held = set(recorded.get("holdout", []) if holdout is None else holdout)
    if recorded.get("stage") != "style":
        recorded = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["train"]
    known = set(TrainConfig.__dataclass_fields__) - {"model"}
    weights = style_weights(TrainConfig(**{k: v for k, v in recorded.items() if k in known}))
    vaes = {m: load_model(m)[0].eval() for m in models}
    net = LossNet()
    out: dict = {}
    for split in ("train", "held-out"):
        keep = (lambda f: f.name in held) if split == "held-out" else (lambda f: f.name not in held)
        pool = ImagePool([f for f in list_images(data / "content") if keep(f)], crop)
        spool = ImagePool([f for f in list_images(data / "style") if keep(f)], crop)
        for m, vae in vaes.items():
            rng, tot = random.Random(seed), {}  # every model sees the same crops: the rng restarts
            with torch.no_grad():
                for _ in range(batches):
                    xc, xs = pool.batch(rng, 6, crop, 0.4, rot90=True), spool.batch(rng, 6, crop, 0.4, rot90=True)
                    loss, parts = style_step(vae, net, xc, xs, weights)
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
