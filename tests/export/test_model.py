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
