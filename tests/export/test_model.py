import json

import pytest

torch = pytest.importorskip("torch")

from stylert.export.model import VAE, VAEConfig, elbo_loss, kl_divergence  # noqa: E402

from ..conftest import TINY  # noqa: E402


@pytest.mark.parametrize("hw", [(64, 64), (40, 72), (8, 8)])
def test_shapes_any_multiple_of_8(hw):
    m = VAE(VAEConfig(**TINY)).eval()
    x = torch.rand(2, 3, *hw)
    recon, mu, logvar = m(x, sample=False)
    assert mu.shape == (2, TINY["latent_channels"], hw[0] // 8, hw[1] // 8) == logvar.shape
    assert recon.shape == x.shape
    y = m.reconstruct(x)
    assert y.min() >= 0.0 and y.max() <= 1.0


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
        VAEConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})
    assert VAEConfig().latent_channels >= 8 and VAEConfig().downsample == 8


def _randomize_heads(m):
    for head in (m.decoder.style.net, m.decoder.style.inner):
        if head is not None:
            torch.nn.init.normal_(head[-1].weight, std=0.05)
    return m


def test_style_adapters_silent_at_zero_offset_and_every_part_matters():
    torch.manual_seed(0)
    m = _randomize_heads(VAE(VAEConfig(**{**TINY, "style_hidden": 16}))).eval()
    assert m.cfg.style_blocks == (1, 1, 2, 3) and m.cfg.style_inner == (0, 0, 1, 1)  # the default design
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z, own = m.encoder.encode_with_style(x)
        torch.testing.assert_close(m.decoder(z, torch.zeros_like(own)), m.decoder(z), atol=1e-6, rtol=0)
        d = torch.randn_like(own)
        y = m.decoder(z, d)
        assert not torch.allclose(y, m.decoder(z), atol=1e-3)
        # the hidden-layer FiLM and the extra (coarse) adapters each change the output
        m.decoder.more_adapters[0][1][2].weight.mul_(0)  # the 1/8 level's third adapter
        y2 = m.decoder(z, d)
        assert not torch.allclose(y, y2, atol=1e-5)
        m.decoder.style.inner[-1].weight.zero_()
        assert not torch.allclose(y2, m.decoder(z, d), atol=1e-5)


def test_older_style_models_load_as_one_unmodulated_adapter_per_level(tmp_path):
    """An older config (no style_blocks, no style_inner) describes the old decoder, and
    `--init` from it starts the new design with exactly the old outputs (the new parts start
    silent), so a style stage can continue from a shipped model."""
    from stylert.export.checkpoint import load_model, save_model
    from stylert.export.train import init_from

    d = {**VAEConfig(**{**TINY, "style_hidden": 16}).to_dict()}
    del d["style_blocks"], d["style_inner"]
    old_cfg = VAEConfig.from_dict(d)
    assert old_cfg.style_blocks == (1, 1, 1, 1) and old_cfg.style_inner == (0, 0, 0, 0)
    torch.manual_seed(0)
    old = _randomize_heads(VAE(old_cfg)).eval()
    assert old.decoder.more_adapters is None and old.decoder.style.inner is None
    save_model(old, tmp_path / "old")
    assert load_model(tmp_path / "old")[0].cfg == old_cfg
    new = VAE(VAEConfig(**{**TINY, "style_hidden": 16})).eval()
    init_from(new, tmp_path / "old")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z, own = old.encoder.encode_with_style(x)
        d = torch.randn_like(own)
        torch.testing.assert_close(new.decoder(z, d), old.decoder(z, d), atol=1e-5, rtol=1e-5)


def test_init_into_fewer_modulated_levels_keeps_the_coarse_levels_rows(tmp_path):
    from stylert.export.checkpoint import save_model
    from stylert.export.train import init_from

    torch.manual_seed(0)
    every = _randomize_heads(VAE(VAEConfig(**{**TINY, "style_hidden": 16, "style_inner": (1, 1, 1, 1)})))
    save_model(every, tmp_path / "every")
    coarse = VAE(VAEConfig(**{**TINY, "style_hidden": 16}))  # the default: (0, 0, 1, 1)
    assert any("rows dropped" in w for w in init_from(coarse, tmp_path / "every"))
    a, b = every.decoder.style.inner[-1].weight, coarse.decoder.style.inner[-1].weight
    assert b.shape[0] == sum(coarse.decoder.style.inner_sizes) < a.shape[0]
    torch.testing.assert_close(b, a[: b.shape[0]])
    # one flag for every level is still understood (a config written as style_inner: true)
    assert VAEConfig(**{**TINY, "style_inner": True}).style_inner == (1, 1, 1, 1)
