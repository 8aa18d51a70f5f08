"""The distill stage: a leaner decoder learns to paint what a trained model paints.

The student shares the teacher's encoder (copied and frozen: the same latent, the same style
codes, so the ELBO's latent and every runtime's mixing stay as they were) and gets a cheaper
decoder (VAEConfig: fewer residual blocks, the PixelShuffle head). It starts from the
teacher's decoder wherever the two agree (the input conv, the blocks of the same dilation,
the conv to 1/2, the style head's rows for those convolutions) and learns the rest.

On a batch of content crops x_c and style crops x_s, at strengths a (a quarter 0: the
reconstruction; half 1: the default; the rest uniform), both decoders paint the same mixed
latent and style offset; the student's output y is pulled towards the teacher's y_t:

    pixels:    |y - y_t|                                    (mean absolute error)
    features:  ||relu2_2(y) - relu2_2(y_t)||^2, relative   (edges and strokes where the teacher's are)
    texture:   VGG-16 Gram matrices at relu1_2..relu3_3 of y against y_t, relative
               (a small decoder fitted on pixels alone paints the strokes' texture blurred)

A teacher is a sharper target than the paintings themselves (each pair has one answer): 3500
steps brought a student with a third less work close to its teacher, though with less of the
style (docs/model.md, "The distill stage", has what it kept and lost).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylert.engine.errors import StyleRTError

from .model import VAE
from .style import adain_torch, content_loss, gram_loss

TAPS = ("relu1_2", "relu2_2", "relu3_3")
FEATURE_TAP = "relu2_2"
WEIGHTS = {"pixels": 1.0, "features": 0.5, "texture": 0.5}  # terms at step 250 of that run: 0.10, 0.55, 0.30


def film_rows(cfg) -> dict[str, slice]:
    """The rows (scale, shift: 2c per FiLM of c channels) of the style head's last layer, by
    the job of the convolution they modulate: inp, block{i}.{j}, up{i}, rgb."""
    return {k.split(":", 1)[1]: v for k, v in cfg.head_rows().items() if k.startswith("film:")}


@torch.no_grad()
def init_student(student: VAE, teacher: VAE) -> None:
    """Copy everything the student shares with the teacher; the rest keeps its fresh init."""
    shared = ("latent_channels", "widths", "style_widths", "style_hidden", "logvar_clamp")
    differ = [f for f in shared if getattr(student.cfg, f) != getattr(teacher.cfg, f)]
    if differ:
        raise StyleRTError(f"the student's encoder differs from the teacher's ({', '.join(differ)}).",
                           "The distill stage keeps the teacher's encoder: change only --dec-dilations and --dec-head.")
    t_dil = teacher.cfg.dec_dilations  # each student block starts as the teacher's of the nearest dilation
    src = [min(range(len(t_dil)), key=lambda j: abs(t_dil[j] - d)) for d in student.cfg.dec_dilations]
    same_head = student.cfg.dec_head == teacher.cfg.dec_head

    def source(k: str) -> str | None:  # the teacher's tensor a student tensor starts as, if any
        if k.startswith("decoder.blocks."):
            i, rest = k[len("decoder.blocks."):].split(".", 1)
            return f"decoder.blocks.{src[int(i)]}.{rest}"
        if k.startswith(("encoder.", "decoder.inp.", "decoder.up.", "decoder.style.code_scale", "decoder.style.net.0.")) \
                or (same_head and k.startswith("decoder.rgb.")):
            return k
        return None

    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    for k in s_sd:
        t = source(k)
        if t in t_sd and t_sd[t].shape == s_sd[k].shape:
            s_sd[k] = t_sd[t].clone()
    if not same_head:  # a new head starts out painting mid-grey, not the noise of a random conv
        s_sd["decoder.rgb.weight"].mul_(0.01)
        s_sd["decoder.rgb.bias"].fill_(0.5)
    key, t_rows = "decoder.style.net.2.weight", film_rows(teacher.cfg)
    for name, rows in film_rows(student.cfg).items():
        if name.startswith("block"):
            i, j = name[len("block"):].split(".")
            name = f"block{src[int(i)]}.{j}"
        if name in t_rows and t_rows[name].stop - t_rows[name].start == rows.stop - rows.start:
            s_sd[key][rows] = t_sd[key][t_rows[name]]
    student.load_state_dict(s_sd)
    student.encoder.requires_grad_(False)


def strengths(b: int, device) -> torch.Tensor:
    a = torch.rand(b, device=device)
    q = max(1, b // 4)
    a[:q] = 0.0
    a[q : q + b // 2] = 1.0
    return a


def distill_step(student: VAE, teacher: VAE, vgg, xc, xs) -> tuple[torch.Tensor, dict]:
    """One distillation loss on content crops xc and style crops xs (B, 3, H, W) in [0, 1]."""
    with torch.no_grad():
        z, cc = teacher.encoder.encode_with_style(xc)
        _, cs = teacher.encoder.encode_with_style(xs)
        a = strengths(xc.shape[0], xc.device)
        t = adain_torch(z, cs, student.cfg.latent_channels, a[:, None, None, None].to(z.dtype))
        off = (a[:, None] * (cs.float() - cc.float())).to(t.dtype)
        y_t = teacher.decoder.image(t, off)
        f_t = vgg(y_t)
    y = student.decoder(t, off)
    f = vgg(y)
    parts = {"pixels": (y.float() - y_t.float()).abs().mean(),
             "features": content_loss(f, f_t, FEATURE_TAP).mean(),
             "texture": gram_loss(f, f_t, TAPS).mean()}
    loss = sum(WEIGHTS[k] * v for k, v in parts.items())
    out = {k: v.item() for k, v in parts.items()}
    out["psnr_t"] = float(10 * torch.log10(1.0 / F.mse_loss(y.detach().float().clamp(0, 1), y_t.float()).clamp_min(1e-10)))
    return loss, out
