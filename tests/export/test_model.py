import json

import pytest

torch = pytest.importorskip("torch")

from stylert.export.model import VAE, VAEConfig, elbo_loss, kl_divergence  # noqa: E402

from ..conftest import TINY  # noqa: E402


@pytest.mark.parametrize("hw", [(64, 64), (40, 72), (8, 8), (4, 12)])
def test_shapes_any_multiple_of_the_downsampling(hw):
    m = VAE(VAEConfig(**TINY)).eval()
    d = m.cfg.downsample
    assert d == 4
    x = torch.rand(2, 3, *hw)
    recon, mu, logvar = m(x, sample=False)
    assert mu.shape == (2, TINY["latent_channels"], hw[0] // d, hw[1] // d) == logvar.shape
    assert recon.shape == x.shape
    y = m.reconstruct(x)
    assert y.min() >= 0.0 and y.max() <= 1.0
    z, code = m.encoder.encode_with_style(x)  # the style branch reaches 1/16: one pixel is enough
    assert code.shape == (2, 2 * sum(m.cfg.style_channels)) and torch.isfinite(code).all()


def test_inference_uses_the_mean_training_samples():
    m = VAE(VAEConfig(**TINY)).eval()
    x = torch.rand(1, 3, 32, 32)
    a, b = m(x, sample=False)[0], m(x, sample=False)[0]
    assert torch.equal(a, b)
    torch.manual_seed(1)
    c = m(x, sample=True)[0]
    assert not torch.equal(a, c)


def test_kl_is_zero_for_the_prior_and_positive_otherwise():
    mu, logvar = torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3)
    assert torch.allclose(kl_divergence(mu, logvar), torch.zeros(2))
    assert (kl_divergence(mu + 0.5, logvar) > 0).all()
    x = torch.rand(2, 3, 24, 24)
    loss, mse, kl = elbo_loss(x, x, mu + 1, logvar, beta=0.1)
    assert mse == 0 and kl > 0 and torch.isclose(loss, 0.1 * kl)


def test_config_roundtrip_and_rejects_unknown_fields():
    cfg = VAEConfig(**TINY)
    assert VAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        VAEConfig.from_dict({**cfg.to_dict(), "enc_blocks": (0, 1, 1, 2)})  # a model of another design
    assert VAEConfig().downsample == 4 and VAEConfig().latent_channels >= 8


def test_every_convolution_pads_by_replication():
    """No zero padding anywhere: a zero border is an edge the style-modulated decoder would
    paint as a frame."""
    m = VAE(VAEConfig(**TINY))
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs and all(c.padding_mode == "replicate" for c in convs)


def test_zero_offset_is_exactly_the_reconstruction_and_every_film_matters():
    torch.manual_seed(0)
    m = VAE(VAEConfig(**TINY)).eval()
    torch.nn.init.normal_(m.decoder.style.net[-1].weight, std=0.05)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z, own = m.encoder.encode_with_style(x)
        assert torch.equal(m.decoder(z, torch.zeros_like(own)), m.decoder(z))
        d = torch.randn_like(own)
        y = m.decoder(z, d)
        assert not torch.allclose(y, m.decoder(z), atol=1e-3)
        # each modulated convolution's FiLM rows change the output
        w = m.decoder.style.net[-1].weight
        i = 0
        for c in m.cfg.film_channels:
            saved = w[i : i + 2 * c].clone()
            w[i : i + 2 * c] = 0
            assert not torch.allclose(m.decoder(z, d), y, atol=1e-6)
            w[i : i + 2 * c] = saved
            i += 2 * c
        assert i == w.shape[0]


def test_the_shuffle_head_paints_full_size_from_half_and_is_modulated():
    m = VAE(VAEConfig(**{**TINY, "dec_head": "shuffle"})).eval()
    assert len(m.decoder.up) == 1 and m.decoder.rgb.out_channels == 12
    assert sum(2 * c for c in m.cfg.film_channels) == m.decoder.style.net[-1].out_features
    x = torch.rand(2, 3, 40, 24)
    z, code = m.encoder.encode_with_style(x)
    torch.nn.init.normal_(m.decoder.style.net[-1].weight, std=1.0)
    with torch.no_grad():
        y0, y1 = m.decoder(z), m.decoder(z, code.flip(0) - code)
    assert y0.shape == y1.shape == x.shape and not torch.allclose(y0, y1)
    with pytest.raises(ValueError, match="dec_head"):
        VAEConfig(dec_head="transposed")


def test_configs_written_before_the_head_choice_load_with_the_conv_head():
    d = VAEConfig(**TINY).to_dict()
    del d["dec_head"]
    assert VAEConfig.from_dict(d).dec_head == "conv"


@pytest.mark.parametrize("kw, mixes", [({"style_kernels": 3}, (TINY["widths"][2] * 3,) * 2),
                                       ({"up_kernels": 3}, (TINY["widths"][1] * 3, TINY["widths"][0] * 3)),
                                       ({"style_kernels": 2, "up_kernels": 1}, (TINY["widths"][2] * 2,) * 2 + TINY["widths"][1::-1])],
                         ids=["blocks", "up", "both"])
def test_style_filters_change_the_marks_per_style_and_are_off_at_zero_offset(kw, mixes):
    """VAEConfig.style_kernels / up_kernels: the style offset chooses each block's (and each
    upsampling conv's) depthwise filter. A zero offset (strength 0) gives exactly the
    reconstruction; each filter's mix rows matter; two styles that differ only in the mix give
    different pictures (spatial control, not a gain)."""
    torch.manual_seed(0)
    m = VAE(VAEConfig(**TINY, **kw)).eval()
    w = m.decoder.style.net[-1].weight
    film_rows = 2 * sum(m.cfg.film_channels)
    assert w.shape[0] == film_rows + sum(m.cfg.kernel_mixes) and m.cfg.kernel_mixes == mixes
    assert [k for k in m.cfg.head_rows() if k.startswith("mix")] == \
        [f"mix{i}" for i in range(len(TINY["dec_dilations"]) if "style_kernels" in kw else 0)] + \
        [f"mix:up{i}" for i in range(2 if "up_kernels" in kw else 0)]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.nn.init.normal_(w[film_rows:], std=0.3)  # the FiLM rows stay zero: only the filters act
        z, own = m.encoder.encode_with_style(x)
        assert torch.equal(m.decoder(z, torch.zeros_like(own)), m.decoder(z))
        d = torch.randn_like(own)
        y = m.decoder(z, d)
        assert not torch.allclose(y, m.decoder(z), atol=1e-4)
        i = film_rows
        for c in m.cfg.kernel_mixes:
            saved = w[i : i + c].clone()
            w[i : i + c] = 0
            assert not torch.allclose(m.decoder(z, d), y, atol=1e-6)
            w[i : i + c] = saved
            i += c
        assert i == w.shape[0]
    for k in kw:
        with pytest.raises(ValueError, match=f"{k} must be 0"):
            VAEConfig(**TINY, **{k: -1})


def test_style_norm_sets_the_layers_statistics_from_the_style_and_is_off_at_zero_offset():
    """VAEConfig.style_norm: the 1/4-level convolutions blend toward their instance-normalized
    activations scaled and shifted by the style. A zero offset gives exactly the
    reconstruction; with the blend at 1 a layer's per-channel statistics are the style's
    whatever the photo's contrast; calibrate_norms starts them at the photos' own."""
    torch.manual_seed(0)
    m = VAE(VAEConfig(**TINY, style_norm=True)).eval()
    n_layers = 1 + 2 * len(TINY["dec_dilations"])
    assert m.cfg.norm_layers == n_layers and len(m.decoder.norms) == n_layers
    w = m.decoder.style.net[-1].weight
    film_rows, c = 2 * sum(m.cfg.film_channels), TINY["widths"][2]
    assert w.shape[0] == film_rows + 3 * c * n_layers
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z, own = m.encoder.encode_with_style(x)
        m.decoder.calibrate_norms(z)
        hs = []
        hook = m.decoder.inp.register_forward_hook(lambda _m, _i, out: hs.append(out))
        m.decoder(z)
        hook.remove()
        assert torch.allclose(m.decoder.norms[0].shift, hs[0].mean(dim=(2, 3)).mean(0), atol=1e-5)
        torch.nn.init.normal_(w[film_rows:], std=0.3)  # the FiLM rows stay zero: only the blends act
        assert torch.equal(m.decoder(z, torch.zeros_like(own)), m.decoder(z))
        d = torch.randn_like(own)
        assert not torch.allclose(m.decoder(z, d), m.decoder(z), atol=1e-4)
        # blend 1, no scale or shift from the style: the first layer's output has the norm's statistics,
        # for a photo of any contrast
        norm = m.decoder.norms[0]
        mod = (torch.full((1, c, 1, 1), 1.0 / norm.BLEND_GAIN), torch.zeros(1, c, 1, 1), torch.zeros(1, c, 1, 1))
        for gain in (0.5, 20.0):
            h = torch.randn(1, c, 8, 8) * gain + 3.0
            y = norm(h, h, mod)
            assert torch.allclose(y.mean(dim=(2, 3))[0], norm.shift, atol=1e-4)
            assert torch.allclose(y.std(dim=(2, 3), unbiased=False)[0], norm.scale.abs(), rtol=1e-2, atol=1e-4)


def test_without_the_input_film_the_style_starts_at_the_first_block():
    """VAEConfig(input_film=False): the decoder's input conv is not modulated (its FiLM drew a
    sky's grain as every painting's drips); the head has no rows for it, a zero offset is the
    reconstruction, and the style still changes the picture through the blocks."""
    torch.manual_seed(0)
    m = VAE(VAEConfig(**TINY, input_film=False)).eval()
    full = VAEConfig(**TINY)
    assert m.cfg.film_channels == full.film_channels[1:] and "film:inp" not in m.cfg.head_rows()
    assert m.cfg.film_layers[0] == "block0.0" and list(m.cfg.head_rows())[0] == "film:block0.0"
    torch.nn.init.normal_(m.decoder.style.net[-1].weight, std=0.05)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        z, own = m.encoder.encode_with_style(x)
        assert torch.equal(m.decoder(z, torch.zeros_like(own)), m.decoder(z))
        assert not torch.allclose(m.decoder(z, torch.randn_like(own)), m.decoder(z), atol=1e-4)
    assert VAEConfig.from_dict({k: v for k, v in full.to_dict().items() if k != "input_film"}).input_film is True
