"""`stylert train`: fit the VAE on a folder of images by minimizing the negative ELBO.

Random scale, crop and flip of every image; reconstruction (MSE) plus beta x KL with a linear
KL warm-up; Adam with a cosine learning-rate decay; periodic checkpoints that resume exactly
(weights, optimizer state, step, RNG seed); CPU or CUDA chosen automatically (bf16 autocast
on CUDA). Held-out images are scored at 256x256 (centre crops) at every checkpoint.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import random
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stylert.engine.errors import StyleRTError
from stylert.engine.images import atomic_write_bytes, center_crop, list_images, load_image, make_readable

from .checkpoint import load_model, save_model
from .config import TrainConfig, VAEConfig  # noqa: F401 (TrainConfig: callers import it here)
from .model import VAE, elbo_loss


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast for the forward pass (weights, optimizer and loss stay float32). On this
    project's 2-core AVX-512 CPU it made a training step 2.5x faster than float32 (with
    channels_last; README, "Training speed"); on CPUs without bf16 kernels it would be slower."""
    if precision not in ("auto", "fp32", "bf16"):
        raise StyleRTError(f"unknown training precision {precision!r}.", "Use auto, fp32 or bf16.")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR in dB over a batch of images in [0, 1]."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


class ImagePool:
    """All training images in memory as uint8 HWC arrays (a few MB for hundreds of images)."""

    def __init__(self, files: list[Path], min_side: int):
        self.images: list[np.ndarray] = []
        self.skipped: list[tuple[Path, str]] = []
        for f in files:
            try:
                img = load_image(f)
            except StyleRTError as e:
                warnings.warn(f"skipping {e}", stacklevel=2)
                self.skipped.append((f, str(e)))
                continue
            if min(img.size) < min_side:  # upscale tiny images so a crop fits
                s = min_side / min(img.size)
                img = img.resize((max(min_side, round(img.width * s)), max(min_side, round(img.height * s))))
            self.images.append(np.asarray(img))
        if not self.images:
            raise StyleRTError("no readable training images.", "All files failed to load; see the warnings above.")
        self.extras: list[tuple[list[np.ndarray], float]] = []

    def add(self, images: list[np.ndarray], share: float) -> None:
        """Draw `share` of every batch's images from `images` (beside groups added before), the
        rest from the files."""
        self.extras.append((list(images), float(share)))

    def _group(self, rng: random.Random) -> list[np.ndarray]:
        if not self.extras:
            return self.images
        u, acc = rng.random(), 0.0  # one draw whatever the number of groups: a run with one repeats exactly
        for images, share in self.extras:
            acc += share
            if images and u < acc:
                return images
        return self.images

    def batch(self, rng: random.Random, n: int, crop: int, scale_min: float, rot90: bool = False,
              jitter: float = 0.0) -> torch.Tensor:
        """n random crops (N, 3, crop, crop) in [0, 1]: scaled by U(scale_min, 1), flipped, with
        rot90 turned by 90 degrees half the time, and with `jitter` of them recoloured."""
        from PIL import Image

        out = np.empty((n, crop, crop, 3), np.uint8)
        for i in range(n):
            group = self._group(rng)
            a = group[rng.randrange(len(group))]
            h, w = a.shape[:2]
            s = rng.uniform(max(scale_min, crop / min(h, w)), 1.0)
            if s < 0.999:
                a = np.asarray(Image.fromarray(a).resize((max(crop, round(w * s)), max(crop, round(h * s))), Image.BICUBIC))
                h, w = a.shape[:2]
            y, x = rng.randrange(h - crop + 1), rng.randrange(w - crop + 1)
            c = a[y : y + crop, x : x + crop]
            if rng.random() < 0.5:
                c = c[:, ::-1]
            if rot90 and rng.random() < 0.5:  # paintings have no "up" for their strokes
                c = np.rot90(c, rng.choice((1, 3)))
            if jitter and rng.random() < jitter:
                c = recolour(c, rng.uniform(-np.pi, np.pi), rng.uniform(0.5, 1.5))
            out[i] = c
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


# RGB <-> YIQ: Y is the luminance, (I, Q) the chroma plane, where a rotation turns the hue
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_RGB = np.linalg.inv(_YIQ).astype(np.float32)


def recolour(c: np.ndarray, hue: float, saturation: float) -> np.ndarray:
    """(H, W, 3) uint8 with its hue turned by `hue` radians and its chroma scaled by
    `saturation`; the luminance (the strokes' light and dark) is kept. A painting's pattern in
    colours it never had: the decoder must read the colours from the style code, not
    remember them with the painting's pattern."""
    ch, sh = np.cos(hue) * saturation, np.sin(hue) * saturation
    turn = np.array([[1, 0, 0], [0, ch, -sh], [0, sh, ch]], np.float32)
    m = _RGB @ turn @ _YIQ
    return np.clip(c.astype(np.float32) @ m.T, 0, 255).round().astype(np.uint8)


def center_crops(files: list[Path], size: int) -> torch.Tensor | None:
    """Held-out images as (N, 3, size, size): centre crops, enlarged only when smaller."""
    arrs = [np.asarray(center_crop(load_image(f), size, size, downscale=False)) for f in files]
    if not arrs:
        return None
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float().div_(255.0)


@torch.no_grad()
def evaluate(model: VAE, x: torch.Tensor, device: torch.device) -> float:
    model.eval()
    y = torch.cat([model.reconstruct(x[i : i + 4].to(device)).cpu() for i in range(0, len(x), 4)])
    model.train()
    return psnr(y, x)


def probe_paintings(files: list[Path], n: int = 6) -> list[Path]:
    """The probe's paintings: up to n held-out ones taken in turn from each folder (the folders
    are the collections: one painter's works would agree with each other), none if under 2."""
    folders: dict[Path, list[Path]] = {}
    for f in sorted(files):
        folders.setdefault(f.parent, []).append(f)
    order = [f for rank in itertools.zip_longest(*folders.values()) for f in rank if f is not None]
    return order[:n] if len(order) >= 2 else []


@torch.no_grad()
def probe_marks(model: VAE, styles: torch.Tensor, device: torch.device) -> dict:
    """The drip probe (export/marks.py) at a checkpoint: its grainy sky stylized by the decoder
    alone (no palette step) with each held-out painting's centre crop (N, 3, s, s), and how
    alike the marks are across paintings (1 = the decoder's own marks whatever the painting)
    and how periodic. Logged in the history, so a run shows whether its marks become the
    painting's while it trains, not only after a separate report."""
    from .marks import measure, probe_contents
    from .style import adain_torch

    sky = torch.from_numpy(probe_contents(styles.shape[-1])["gradient+grain"]).permute(2, 0, 1)[None].to(device)
    model.eval()
    z, own = model.encoder.encode_with_style(sky)
    outs = []
    for i in range(len(styles)):
        _, cs = model.encoder.encode_with_style(styles[i : i + 1].to(device))
        y = model.decoder.image(adain_torch(z, cs, model.cfg.latent_channels), cs - own)
        outs.append(y[0].permute(1, 2, 0).float().cpu().numpy())
    model.train()
    m = measure(outs)
    return {"probe_correlation": round(m["correlation"], 4), "probe_periodicity": round(m["periodicity"], 4),
            "probe_blotches": round(m["blotches"], 2)}


GROWTHS = {"rgb_film": (False, True), "style_kernels": (0, None), "up_kernels": (0, None), "style_norm": (False, True), "input_film": (True, False)}


def init_from(model: VAE, folder: str | os.PathLike) -> None:
    """Load a trained model's weights into `model`, which must have the same configuration
    (the style stage starts from the VAE stage's model), or one changed only as GROWTHS allow:
    the RGB output's FiLM, the style-chosen filters (VAEConfig.style_kernels, up_kernels), the
    normalization blend (style_norm) added, or the input convolution's FiLM (input_film)
    dropped. The style head's rows are copied by what they drive (VAEConfig.head_rows); new
    rows start at zero, so an added part changes nothing until training moves it."""
    src, _ = load_model(folder)
    a, b = src.cfg, model.cfg
    changed = [k for k in GROWTHS if getattr(a, k) != getattr(b, k)]
    allowed = dataclasses.replace(a, **{k: getattr(b, k) for k in GROWTHS}) == b and all(
        getattr(a, k) == GROWTHS[k][0] and GROWTHS[k][1] in (None, getattr(b, k)) for k in changed)
    if changed and allowed:
        state, mine = src.state_dict(), model.state_dict()
        key = "decoder.style.net.2.weight"
        rows = torch.zeros_like(mine[key])
        old_rows = a.head_rows()
        for name, dst in b.head_rows().items():
            if name in old_rows and old_rows[name].stop - old_rows[name].start == dst.stop - dst.start:
                rows[dst] = state[key][old_rows[name]]
        state[key] = rows
        for k, v in mine.items():  # the filters' kernels, the norms' statistics: fresh (their mix, blend is zero)
            state.setdefault(k, v)
        model.load_state_dict(state)
        return
    if a != b:
        raise StyleRTError("cannot start from it: it was trained with another model configuration.",
                           f"--init takes a model of this configuration ({model.cfg}).", path=folder)
    model.load_state_dict(src.state_dict())


def _save_state(folder: Path, model: VAE, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig, history: list,
                teacher: str | None = None) -> None:
    """The resume state (weights, Adam's tensors flattened into safetensors: no pickle, and the
    config with the step) as one atomic step: written whole into `ckpt-STEP/` beside `folder`,
    then `folder` (a symbolic link) is swapped to it with one rename. An interrupt at any
    moment leaves `folder` pointing at a complete checkpoint; the one before stays as well."""
    tensors, scalars = {}, {}
    for idx, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = float(v)
    root = folder.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".ckpt-{step}.", dir=root))
    try:
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        save_model(model, tmp, extra={"train": _jsonable(cfg), "step": step, "optimizer_scalars": scalars, "history": history,
                                      **({"teacher_sha256": teacher} if teacher else {})})
        make_readable(tmp)
        final = root / f"ckpt-{step}"
        if final.exists():  # a rerun of this step (after --no-resume --overwrite): not the live one
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if folder.is_dir() and not folder.is_symlink():  # a checkpoint of the old layout: keep it by its step
        os.replace(folder, root / f"ckpt-{_step_of(folder)}")
    link = root / f".{folder.name}.link.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(final.name)
    os.replace(link, folder)
    keep = {final.name, *(p.name for p in sorted(root.glob("ckpt-*"), key=lambda p: _step_of(p))[-2:])}
    for old in root.glob("ckpt-*"):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def _step_of(folder: Path) -> int:
    try:
        return int(json.loads((folder / "config.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def _load_state(folder: Path, model: VAE, opt: torch.optim.Optimizer) -> tuple[int, list]:
    try:
        meta = json.loads((folder / "config.json").read_text())
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        tensors = load_file(str(folder / "optimizer.safetensors"))
        sd = opt.state_dict()
        state: dict = {}
        for key, v in tensors.items():
            idx, k = key.split(".", 1)
            state.setdefault(int(idx), {})[k] = v
        for key, v in meta.get("optimizer_scalars", {}).items():
            idx, k = key.split(".", 1)
            state.setdefault(int(idx), {})[k] = torch.tensor(v)
        sd["state"] = state
        opt.load_state_dict(sd)
        return int(meta["step"]), list(meta.get("history", []))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise StyleRTError(f"cannot resume from it: {str(e).splitlines()[0] if str(e) else type(e).__name__}.",
                           "The checkpoint is truncated or from another model configuration. Start over with "
                           "--no-resume --overwrite, or point --out at a new folder.", path=folder) from None


def _check_resume(folder: Path, cfg: TrainConfig, teacher_sha: str | None) -> None:
    """Refuse to continue the run in `folder` (OUT/last) under another model configuration,
    stage or (distill) teacher than this command's: it would go on silently towards another
    target. A config.json that is not the one train wrote is refused with the remedy too."""
    again = "Continue it with its own command (its config.json has it), or start over with --no-resume --overwrite, or choose another --out."
    path = folder / "config.json"
    try:
        saved = json.loads(path.read_text()) if path.is_file() else {}
        if not isinstance(saved, dict) or not isinstance(saved.get("train", {}), dict):
            raise ValueError("it is not the object train writes")
        same_model = "model" not in saved or VAEConfig.from_dict(saved["model"]) == cfg.model
    except (OSError, UnicodeDecodeError, ValueError, TypeError, RecursionError) as e:
        raise StyleRTError(f"cannot resume from it: its config.json is unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__}).",
                           "The checkpoint is damaged. Start over with --no-resume --overwrite, or point --out at a new folder.",
                           path=folder) from None
    train = saved.get("train", {})
    if not same_model or train.get("stage", cfg.stage) != cfg.stage:
        raise StyleRTError("holds a run of another model configuration or stage than this command's.", again, path=folder)
    if cfg.stage == "distill":
        # the teacher is read at every step: another one would change what the run learns
        had, had_init = saved.get("teacher_sha256"), train.get("init")
        other = (had != teacher_sha) if had else (had_init is not None and cfg.init is not None
                                                  and Path(had_init).resolve() != Path(cfg.init).resolve())
        if other:
            raise StyleRTError(f"holds a distill run from another teacher (--init {had_init}"
                               + (f", sha256 {had[:12]}" if had else "") + f"; this command's --init {cfg.init}"
                               + (f", sha256 {teacher_sha[:12]}" if teacher_sha else "") + ").",
                               f"Resume with its own teacher (--init {had_init}), or start over with --no-resume --overwrite, "
                               "or choose another --out.", path=folder)


def _jsonable(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["model"] = cfg.model.to_dict()
    return d


def _elbo_loss(model: VAE, pool: ImagePool, rng, cfg: TrainConfig, device, amp: bool, beta: float):
    x = pool.batch(rng, cfg.batch, cfg.crop, cfg.scale_min).to(device, non_blocking=True)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        recon, mu, logvar = model(x)
    loss, mse, kl = elbo_loss(x, recon.float(), mu.float(), logvar.float(), beta)
    return loss, {"psnr": 10 * math.log10(1.0 / max(mse.item(), 1e-10)), "kl": kl.item()}


def style_weights(cfg: TrainConfig) -> dict:
    """The style stage's loss weights, as `style.style_step` takes them."""
    return {"style": cfg.style_weight, "gram": cfg.gram_weight, "patch": cfg.patch_weight, "coarse": cfg.coarse_weight, "colour": cfg.colour_weight,
            "content": cfg.content_weight, "detail": cfg.detail_weight, "layout": cfg.layout_weight,
            "distinct": cfg.distinct_weight, "recon": cfg.recon_weight}


def content_batch(pool: ImagePool, rng, n: int, crop: int, scale_min: float, twice: bool) -> torch.Tensor:
    """n content crops; twice (the distinct term, which compares one content under two styles):
    n/2 crops, each twice (first half, second half)."""
    return pool.batch(rng, n // 2, crop, scale_min).repeat(2, 1, 1, 1) if twice else pool.batch(rng, n, crop, scale_min)


def _pairs(pool: ImagePool, style_pool: ImagePool, rng, cfg: TrainConfig, device):
    """A batch of content crops (content_batch) and one of style crops (turned and recoloured), on `device`."""
    xc = content_batch(pool, rng, cfg.batch, cfg.crop, cfg.scale_min, cfg.distinct_weight > 0)
    xs = style_pool.batch(rng, cfg.batch, cfg.crop, cfg.scale_min, rot90=True, jitter=cfg.style_jitter)
    return tuple(x.to(device).contiguous(memory_format=torch.channels_last) for x in (xc, xs))


def _distill_loss(model: VAE, teacher: VAE, lossnet, pool: ImagePool, style_pool: ImagePool, rng, cfg: TrainConfig,
                  device, amp: bool):
    from .distill import distill_step

    xc, xs = _pairs(pool, style_pool, rng, cfg, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        return distill_step(model, teacher, lossnet, xc, xs)


def _style_loss(model: VAE, lossnet, pool: ImagePool, style_pool: ImagePool, rng, cfg: TrainConfig, device, amp: bool,
                beta: float):
    from .style import style_step

    xc, xs = _pairs(pool, style_pool, rng, cfg, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        return style_step(model, lossnet, xc, xs, style_weights(cfg), beta, cfg.distinct_finest)


@torch.no_grad()
def _set_whitening(model: VAE, pool: ImagePool, style_pool: ImagePool, rng, cfg: TrainConfig, device) -> None:
    """Fix the style head's input scaling from 128 (content, style) offsets of training crops."""
    offsets = []
    for _ in range(8):
        cc = model.encoder.encode_with_style(pool.batch(rng, 16, cfg.crop, cfg.scale_min).to(device))[1]
        cs = model.encoder.encode_with_style(style_pool.batch(rng, 16, cfg.crop, cfg.scale_min).to(device))[1]
        offsets.append(cs - cc)
    model.decoder.style.set_whitening(torch.cat(offsets).float())


def held_out(f: Path, held: set[str]) -> bool:
    """Whether a file is held out: an entry names the file, a folder above it, or a trailing
    part of its path (`folder/file.jpg`), so whole source folders are held out by name."""
    parts = f.parts
    return any(tuple(Path(h).parts) == parts[len(parts) - len(Path(h).parts):] or h in parts[:-1] for h in held)


def lr_at(step: int, cfg: TrainConfig) -> float:
    warm = 100  # short linear LR warm-up: Adam's first steps are noisy
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(1.0, t)))


def check_config(cfg: TrainConfig) -> None:
    """Every number a user can type, checked before any image is read: the value, the
    accepted range and what it means."""
    d = cfg.model.downsample
    weights = ("style_weight", "gram_weight", "patch_weight", "coarse_weight", "colour_weight", "content_weight", "detail_weight", "layout_weight", "distinct_weight",
               "recon_weight", "beta")
    for bad, what, note in [
        (cfg.steps < 1, f"--steps {cfg.steps} trains nothing.", "Give the number of optimizer steps, 1 or more (e.g. 6000)."),
        (cfg.batch < 1, f"--batch {cfg.batch} is not a batch.", "Give the images per step, 1 or more (e.g. 8)."),
        (cfg.distinct_weight > 0 and cfg.batch % 2, f"--distinct-weight needs an even --batch, not {cfg.batch}.",
         "Each content crop comes twice, with two styles: give an even --batch (e.g. 8)."),
        (cfg.distinct_finest < 1 or cfg.distinct_finest % 2 == 0 or cfg.distinct_finest >= 33,
         f"--distinct-finest {cfg.distinct_finest} is invalid.",
         "The finest marks the distinct term reads, in px: an odd size under 33 (1 reads every mark; e.g. 5)."),
        (cfg.crop < 4 * d or cfg.crop % d, f"--crop {cfg.crop} is invalid.",
         f"The training crop side: a multiple of {d} (the latent is 1/{d} of the image), at least {4 * d} (e.g. 128)."),
        (not 0 < cfg.scale_min <= 1, f"scale_min {cfg.scale_min} is outside (0, 1].", "It is the smallest random downscale (e.g. 0.4)."),
        (not (cfg.lr > 0 and math.isfinite(cfg.lr)), f"--lr {cfg.lr} is invalid.", "A positive learning rate, e.g. 5e-4."),
        (not (0 <= cfg.lr_min <= cfg.lr), f"--lr-min {cfg.lr_min} is invalid.", f"The cosine floor: 0..--lr ({cfg.lr})."),
        (cfg.kl_warmup < 0, f"--kl-warmup {cfg.kl_warmup} is negative.", "Steps of KL warm-up: 0 or more."),
        (cfg.checkpoint_every < 1, f"--checkpoint-every {cfg.checkpoint_every} is invalid.", "Steps between checkpoints: 1 or more."),
        (cfg.threads < 0, f"--threads {cfg.threads} is negative.", "CPU threads: 0 (all) or more."),
        (cfg.eval_size < 4 * d or cfg.eval_size % d, f"eval_size {cfg.eval_size} is invalid.", f"A multiple of {d}, at least {4 * d}."),
        (cfg.stop_after is not None and cfg.stop_after < 1, f"--stop-after {cfg.stop_after} is not a step.",
         "Give the step to end at (1 or more), e.g. 1500 of --steps 5000."),
        (not 0.0 <= cfg.style_jitter <= 1.0, f"--style-jitter {cfg.style_jitter} is outside 0..1.",
         "It is the share of style crops recoloured (e.g. 0.5)."),
        (cfg.textures < 0, f"--textures {cfg.textures} is negative.", "The number of generated style images: 0 or more."),
        (cfg.textures and not 0.0 <= cfg.texture_share <= 1.0, f"--texture-share {cfg.texture_share} is outside 0..1.",
         "It is the share of style crops drawn from the generated textures."),
        (not 0.0 <= cfg.sky_share <= 1.0, f"--sky-share {cfg.sky_share} is outside 0..1.",
         "It is the share of content crops that are generated skies."),
        (cfg.content_paintings + cfg.sky_share > 1.0, f"--content-paintings {cfg.content_paintings} and --sky-share "
         f"{cfg.sky_share} add up to more than all content crops.", "Lower one of them so they sum to 1 or less."),
        (not 0.0 <= cfg.content_paintings <= 1.0, f"--content-paintings {cfg.content_paintings} is outside 0..1.",
         "It is the share of content crops drawn from the paintings."),
        *[(not (getattr(cfg, w) >= 0 and math.isfinite(getattr(cfg, w))), f"--{w.replace('_', '-')} {getattr(cfg, w)} is invalid.",
           "Loss weights are finite numbers >= 0.") for w in weights],
    ]:
        if bad:
            raise StyleRTError(what, note)


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True, overwrite: bool = False) -> dict:
    """Train; returns a summary dict (steps, seconds, final train loss, held-out PSNR).

    resume: continue OUT/last when it exists. A run already in OUT (last/ or final/) is
    replaced only with `overwrite` when not resumed."""
    from tqdm import tqdm

    check_config(cfg)
    if not cfg.data:
        raise StyleRTError("no training data given.", "Pass one or more folders of images: `stylert train PHOTOS/`.")
    if cfg.stage not in ("vae", "style", "distill"):
        raise StyleRTError(f"unknown training stage {cfg.stage!r}.", "Use --stage vae (the ELBO), style or distill.")
    if cfg.stage != "vae" and not cfg.styles:
        raise StyleRTError(f"the {cfg.stage} stage needs paintings.", "Pass --styles FOLDER (the DATA folders are the contents).")
    out = Path(cfg.out)
    resuming = resume and (out / "last" / "optimizer.safetensors").exists()
    if not resuming and ((out / "last").exists() or (out / "final").exists()) and not overwrite:
        raise StyleRTError("already holds a training run (last/ or final/).",
                           "Rerun without --no-resume to continue it, pass --overwrite to start over in it, or choose "
                           "another --out.", path=out)
    if out.exists() and not out.is_dir():
        raise StyleRTError("is a file, not a folder.", "Pass a folder for --out.", path=out)
    if cfg.stage == "style" and not cfg.init and not resuming:
        raise StyleRTError("the style stage starts from a trained VAE.", "Pass --init MODEL (e.g. a folder written by `stylert train`).")
    if cfg.stage == "distill" and not cfg.init:
        raise StyleRTError("the distill stage learns from a trained model.", "Pass --init MODEL (the teacher, e.g. models/default).")
    files: list[Path] = []
    for d in cfg.data:
        files += list_images(d)
    style_files: list[Path] = []
    for d in cfg.styles:
        style_files += list_images(d)
    held = set(cfg.holdout)
    train_files = [f for f in files if not held_out(f, held)]
    train_styles = [f for f in style_files if not held_out(f, held)]
    val_files = [f for f in files if held_out(f, held)]
    missing = {h for h in held if not any(held_out(f, {h}) for f in files + style_files)}
    if missing:
        raise StyleRTError(f"held-out files not found in the data: {sorted(missing)}.", "--holdout takes file names that are in the data folders.")
    if not train_files:
        raise StyleRTError("every image is held out.", "Keep some images for training.")

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else (cfg.device if cfg.device != "auto" else "cpu"))
    amp = use_bf16(cfg.precision, device)

    pool = ImagePool(train_files, cfg.crop)
    style_pool = ImagePool(train_styles, cfg.crop) if cfg.stage != "vae" else None
    if cfg.textures and style_pool is not None:
        from .textures import textures

        t1 = time.time()
        style_pool.add(textures(cfg.textures, cfg.seed, max(256, cfg.crop), style_pool.images), cfg.texture_share)
        print(f"generated {cfg.textures} procedural style images in {time.time() - t1:.1f} s ({cfg.texture_share:.0%} of style crops)")
    val = center_crops(val_files, cfg.eval_size)
    probe_styles = center_crops(probe_paintings([f for f in style_files if held_out(f, held)]), cfg.eval_size) \
        if cfg.stage == "style" else None
    # channels_last: oneDNN's and cuDNN's fast convolution layout (no reorders per layer)
    model = VAE(cfg.model).to(device, memory_format=torch.channels_last).train()
    teacher_sha = None  # distill: the teacher's weights' sha256, kept in every checkpoint (a resume checks it)
    if cfg.stage == "style":
        from .style import LossNet

        lossnet = LossNet().to(device, memory_format=torch.channels_last)
    if cfg.stage == "distill":
        from .distill import TAPS, init_student
        from .vgg import VGG16

        lossnet = VGG16(taps=TAPS).to(device, memory_format=torch.channels_last)
        teacher, teacher_sha = load_model(cfg.init)
        teacher = teacher.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)
        init_student(model, teacher)  # also freezes the student's encoder (the teacher's)
    if cfg.stage != "vae" and cfg.content_paintings:
        pool.add(style_pool.images, cfg.content_paintings)
    if cfg.stage != "vae" and cfg.sky_share:
        from .textures import skies

        pool.add(skies(200, cfg.seed, max(256, cfg.crop)), cfg.sky_share)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    step, history = 0, []
    if resuming:
        _check_resume(out / "last", cfg, teacher_sha)
        step, history = _load_state(out / "last", model, opt)
        rng = random.Random(cfg.seed * 1_000_003 + step)  # a fresh, still repeatable stream
        torch.manual_seed(cfg.seed * 1_000_003 + step)
        last = history[-1] if history else {}
        print(f"resumed from {out / 'last'} ({(out / 'last').resolve().name}): step {step} of {cfg.steps}"
              + (f", train loss {last['train_loss']:.4g}" if "train_loss" in last else "")
              + (f", held-out PSNR {last['heldout_psnr']:.2f} dB" if "heldout_psnr" in last else ""))
    elif cfg.init and cfg.stage != "distill":
        init_from(model, cfg.init)
        print(f"initialized from {cfg.init}")
        if cfg.stage == "style" and bool((model.decoder.style.code_scale == 1).all()):
            # a trained head keeps its scaling: rescaling its inputs would change what it learnt
            _set_whitening(model, pool, style_pool, rng, cfg, device)
        if cfg.stage == "style" and model.cfg.style_norm and all(bool((n.scale == 1).all()) for n in model.decoder.norms):
            with torch.no_grad():  # fresh norms start at the layers' statistics on photographs
                model.decoder.calibrate_norms(model.encoder.posterior_mean(pool.batch(rng, 16, cfg.crop, cfg.scale_min).to(device)))
    print(f"training on {len(pool.images)} images ({len(pool.skipped)} skipped), {len(val_files)} held out; "
          f"device {device}{' (bf16 autocast)' if amp else ''}, {torch.get_num_threads()} threads")

    t0 = time.time()
    ema_loss = ema_parts = None
    end = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
    bar = tqdm(total=end, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    while step < end:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        beta = cfg.beta * min(1.0, (step + 1) / max(1, cfg.kl_warmup))
        if cfg.stage == "style":
            loss, parts = _style_loss(model, lossnet, pool, style_pool, rng, cfg, device, amp, beta)
        elif cfg.stage == "distill":
            loss, parts = _distill_loss(model, teacher, lossnet, pool, style_pool, rng, cfg, device, amp)
        else:
            loss, parts = _elbo_loss(model, pool, rng, cfg, device, amp, beta)
        if not torch.isfinite(loss):
            raise StyleRTError(f"the loss became {loss.item()} at step {step}: training diverged.",
                               f"Lower --lr (now {cfg.lr:g}) and resume from the last checkpoint ({out / 'last'}).")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema_loss = loss.item() if ema_loss is None else 0.95 * ema_loss + 0.05 * loss.item()
        ema_parts = parts if ema_parts is None else {k: 0.95 * ema_parts.get(k, v) + 0.05 * v for k, v in parts.items()}
        bar.set_postfix(loss=f"{ema_loss:.5f}", **{k: f"{v:.4g}" for k, v in ema_parts.items()}, lr=f"{lr_at(step, cfg):.1e}")
        bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == end:
            entry = {"step": step, "stage": cfg.stage, "train_loss": ema_loss, **ema_parts, "seconds": round(time.time() - t0, 1)}
            if val is not None:
                entry["heldout_psnr"] = evaluate(model, val, device)
            if probe_styles is not None:
                entry.update(probe_marks(model, probe_styles, device))
            history.append(entry)
            _save_state(out / "last", model, opt, step, cfg, history, teacher=teacher_sha)
            bar.write(json.dumps(entry))
    bar.close()
    summary = {"steps": step, "seconds": round(time.time() - t0, 1), "train_loss": ema_loss,
               "heldout_psnr": evaluate(model, val, device) if val is not None else None,
               "heldout": sorted(held), "skipped": [str(f) for f, _ in pool.skipped]}
    save_model(model.cpu(), out / "final", extra={"train": _jsonable(cfg), "summary": summary, "history": history})
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary
