"""Make the shipped bank of paintings' style codes that calibrates the INT8 decoder.

    python calib_data/style_codes.py --export out/export \
        --paintings ../shared/data/paintings/{monet_kaggle_MisterBi20,museum_aic_artwall,...} --count 64

Writes calib_data/style_codes.json: the StyleCodes (2K numbers each: per-channel means and
stds of the encoder's features, no pixels) of `--count` paintings drawn (seeded) from the
folders given, encoded as the runtime encodes a style (longer side STYLE_SIDE) by the FP32
export, with the checkpoint's sha256: build-engine uses the bank only for that model (a new
model needs a new bank: rerun this). Use training paintings only, so that the accuracy
figures on held-out paintings stay honest (README.md).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np


def make_bank(export: str | Path, folders: list[str | Path], count: int = 64, seed: int = 0) -> dict:
    from stylert.engine.artifacts import contract_of
    from stylert.engine.build.precision import session
    from stylert.engine.images import as_array, list_images, preprocess, _longer_side_to
    from stylert.engine.runtime import STYLE_SIDE

    contract = contract_of(Path(export))
    files = sorted(p for f in folders for p in list_images(Path(f)))
    random.Random(seed).shuffle(files)
    files = files[:count]
    enc = session(Path(export) / "encoder.onnx")
    codes = []
    for p in files:
        x, _ = preprocess([_longer_side_to(as_array(p), STYLE_SIDE)], contract.downsample)
        codes.append(enc.run(None, {contract.image.name: x})[1][0])
    return {"kind": "stylert-style-codes", "model": contract.checkpoint_sha256, "style_side": STYLE_SIDE,
            "made_from": f"{len(files)} paintings from {', '.join(sorted({Path(f).name for f in folders}))} (seed {seed})",
            "sources": [f"{p.parent.name}/{p.name}" for p in files],
            "codes": [[float(f"{v:.5g}") for v in c] for c in np.asarray(codes, np.float64)]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", required=True, help="the FP32 export folder of the model the bank is for")
    ap.add_argument("--paintings", nargs="+", required=True, help="folders of training paintings")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "style_codes.json"))
    a = ap.parse_args(argv)
    bank = make_bank(a.export, a.paintings, a.count, a.seed)
    Path(a.out).write_text(json.dumps(bank, separators=(",", ":")) + "\n")
    print(f"wrote {a.out}: {len(bank['codes'])} codes for checkpoint {bank['model'][:12]} ({bank['made_from']})")


if __name__ == "__main__":
    main()
