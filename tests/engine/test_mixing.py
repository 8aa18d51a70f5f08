"""The NumPy mixing reference: AdaIN identities, weighted styles, masks, CORAL, lerp/slerp."""

import json

import numpy as np
import pytest

from stylert.engine import mixing
from stylert.engine.errors import StyleRTError
from stylert.engine.mixing import EPS, StyleCode


def _z(rng, n=2, c=4, h=6, w=5):
    return (rng.standard_normal((n, c, h, w)) * rng.uniform(0.5, 2, (1, c, 1, 1)) + rng.uniform(-1, 1, (1, c, 1, 1))).astype(np.float32)


def test_adain_moves_statistics_to_the_style(rng):
    z = _z(rng)
    sm, ss = rng.standard_normal(4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32)
    out = mixing.adain(z, sm, ss)
    mu, sigma = mixing.channel_stats(out)
    np.testing.assert_allclose(mu, np.broadcast_to(sm, mu.shape), atol=1e-5)
    # the content's sigma includes eps, so the output's std is ss * std/sqrt(var+eps)
    np.testing.assert_allclose(sigma, np.broadcast_to(ss, sigma.shape), rtol=1e-3)


def test_adain_strength_blends_linearly(rng):
    z = _z(rng)
    code = StyleCode(rng.standard_normal(4), rng.uniform(0.5, 2, 4))
    full = mixing.adain(z, code.mean, code.std, 1.0)
    np.testing.assert_array_equal(mixing.adain(z, code.mean, code.std, 0.0), z)
    np.testing.assert_allclose(mixing.adain(z, code.mean, code.std, 0.3), 0.3 * full + 0.7 * z, atol=1e-5)


def test_adain_of_itself_is_identity_up_to_eps(rng):
    z = _z(rng)
    mu, sigma = mixing.channel_stats(z)
    np.testing.assert_allclose(mixing.adain(z, mu, sigma), z, atol=1e-5)


def test_channel_stats_definition(rng):
    z = _z(rng)
    mu, sigma = mixing.channel_stats(z)
    np.testing.assert_allclose(mu, z.mean((2, 3)), atol=1e-6)
    np.testing.assert_allclose(sigma, np.sqrt(z.var((2, 3)) + EPS), rtol=1e-6)


def test_weighted_styles_equal_weighted_statistics(rng):
    z = _z(rng)
    a = StyleCode(rng.standard_normal(4), rng.uniform(0.5, 2, 4))
    b = StyleCode(rng.standard_normal(4), rng.uniform(0.5, 2, 4))
    out = mixing.mix(z, [a, b], [3, 1])
    ref = mixing.adain(z, 0.75 * a.mean + 0.25 * b.mean, 0.75 * a.std + 0.25 * b.std)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_masks_full_mask_equals_plain_and_empty_mask_keeps_content(rng):
    z = _z(rng, n=1)
    s = StyleCode(rng.standard_normal(4), rng.uniform(0.5, 2, 4))
    ones, zeros = np.ones((6, 5)), np.zeros((6, 5))
    np.testing.assert_allclose(mixing.mix(z, [s], masks=[ones]), mixing.mix(z, s), atol=1e-5)
    np.testing.assert_allclose(mixing.mix(z, [s], masks=[zeros]), z, atol=1e-6)


def test_masks_use_region_statistics(rng):
    z = _z(rng, n=1)
    a = StyleCode(np.full(4, 3.0), np.full(4, 0.5))
    b = StyleCode(np.full(4, -3.0), np.full(4, 2.0))
    left = np.zeros((6, 5)); left[:, :2] = 1
    out = mixing.mix(z, [a, b], masks=[left, 1 - left])
    np.testing.assert_allclose(out[0, :, :, :2].mean((1, 2)), 3.0, atol=1e-4)
    np.testing.assert_allclose(out[0, :, :, 2:].mean((1, 2)), -3.0, atol=1e-4)
    np.testing.assert_allclose(out[0, :, :, 2:].std((1, 2)), 2.0, rtol=1e-2)


def test_stylecode_json_roundtrip_and_validation(rng):
    c = StyleCode(rng.standard_normal(8), rng.uniform(0.1, 1, 8), model="abc", sources=["x.jpg"])
    d = StyleCode.from_json(c.to_json())
    np.testing.assert_array_equal(d.mean, c.mean)
    np.testing.assert_array_equal(d.std, c.std)
    assert (d.model, d.sources) == ("abc", ["x.jpg"])
    with pytest.raises(StyleRTError):
        StyleCode.from_json('{"kind": "something-else"}')
    with pytest.raises(StyleRTError):
        StyleCode(np.zeros(3), np.array([1.0, 0.0, 1.0]))


@pytest.mark.parametrize("bad", [[1, -1], [0, 0], [1], [np.nan, 1]])
def test_bad_weights(bad):
    with pytest.raises(StyleRTError):
        mixing.normalize_weights(bad, 2)


def test_strength_out_of_range(rng):
    with pytest.raises(StyleRTError, match="strength"):
        mixing.mix(_z(rng), StyleCode(np.zeros(4), np.ones(4)), strength=1.5)


def test_wrong_channel_count_is_a_clear_error(rng):
    with pytest.raises(StyleRTError, match="different model"):
        mixing.adain(_z(rng), np.zeros(3), np.ones(3))


def test_coral_matches_mean_and_covariance(rng):
    style = rng.random((3, 40, 30)).astype(np.float32) * np.array([0.3, 0.8, 0.2], np.float32)[:, None, None]
    content = rng.random((3, 50, 20)).astype(np.float32) * 0.5 + 0.2
    out = mixing.coral(style, content)
    assert out.shape == style.shape and out.dtype == np.float32
    f, c = out.reshape(3, -1).astype(np.float64), content.reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(f.mean(1), c.mean(1), atol=1e-3)
    np.testing.assert_allclose(np.cov(f), np.cov(c), atol=2e-3)


def test_palettes_move_outputs_mix_like_pooled_pixels_and_round_trip(rng):
    y = (rng.random((3, 40, 30)) * 0.8 + 0.1).astype(np.float32)
    style = (rng.random((3, 20, 20)) * np.array([0.3, 0.5, 0.2])[:, None, None] + 0.25).astype(np.float32)
    pal = mixing.rgb_stats(style)
    out = mixing.match_palettes(y, [(pal, None)])
    m, c = mixing.rgb_stats(out)
    np.testing.assert_allclose(m, pal[0], atol=1e-4)
    np.testing.assert_allclose(c, pal[1], rtol=0.03, atol=1e-4)  # FLAT regularizes y's covariance by 2 %
    flat = np.full((3, 40, 30), 0.5, np.float32) + rng.random((3, 40, 30)).astype(np.float32) * 0.01
    assert mixing.match_palettes(flat, [(pal, None)]).std((1, 2)).max() < 0.03  # sensor noise is not stretched to the style's contrast
    assert mixing.match_palettes(y, [(pal, None)], strength=0.0) is y and mixing.match_palettes(y, []) is y
    np.testing.assert_allclose(mixing.match_palettes(y, [(pal, None)], 0.5), (y + out) / 2, atol=1e-5)
    # a region: only its pixels move, and they take the palette
    region = np.zeros((40, 30)); region[:, :10] = 1
    part = mixing.match_palettes(y, [(pal, region)])
    np.testing.assert_array_equal(part[:, :, 10:], y[:, :, 10:])
    np.testing.assert_allclose(mixing.rgb_stats(part[:, :, :10])[0], pal[0], atol=1e-3)
    # the mix of two palettes is the palette of their pooled pixels (equal counts, equal weights)
    other = (rng.random((3, 20, 20)) * 0.6).astype(np.float32)
    mixed = mixing.mix_palettes([pal, mixing.rgb_stats(other)], np.array([0.5, 0.5]))
    pooled = mixing.rgb_stats(np.concatenate([style, other], 2))
    np.testing.assert_allclose(mixed[0], pooled[0], atol=1e-9)
    np.testing.assert_allclose(mixed[1], pooled[1], atol=1e-9)
    assert mixing.mix_palettes([pal, None], np.array([0.5, 0.5])) is None
    # StyleCode: the palette travels in JSON; codes without one load as before; a broken one is refused
    code = mixing.StyleCode(np.zeros(4), np.ones(4), rgb_mean=pal[0], rgb_cov=pal[1])
    back = mixing.StyleCode.from_json(code.to_json())
    np.testing.assert_allclose(back.rgb_cov, pal[1])
    plain = json.loads(code.to_json())
    del plain["rgb_mean"], plain["rgb_cov"]
    assert mixing.StyleCode.from_json(json.dumps(plain)).palette is None
    for bad in ({"rgb_mean": [0.5, 0.5]}, {"rgb_cov": [[1, 2, 0], [0, 1, 0], [0, 0, 1]]}, {"rgb_cov": [[-1, 0, 0], [0, 1, 0], [0, 0, 1]]}):
        with pytest.raises(StyleRTError, match="palette"):
            mixing.StyleCode.from_json(json.dumps({**json.loads(code.to_json()), **bad}))
    with pytest.raises(StyleRTError, match="half a palette"):
        mixing.StyleCode(np.zeros(4), np.ones(4), rgb_mean=pal[0])


def test_lerp_and_slerp(rng):
    a, b = _z(rng), _z(rng)
    np.testing.assert_allclose(mixing.lerp(a, b, 0.25), 0.75 * a + 0.25 * b, atol=1e-6)
    for t in (0.0, 1.0):
        np.testing.assert_allclose(mixing.slerp(a, b, t), a if t == 0 else b, atol=1e-5)
    # slerp of orthogonal unit vectors at t=1/2 stays on the sphere
    u, v = np.zeros((1, 1, 1, 2), np.float32), np.zeros((1, 1, 1, 2), np.float32)
    u[..., 0], v[..., 1] = 1, 1
    m = mixing.slerp(u, v, 0.5)
    np.testing.assert_allclose(m.ravel(), [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    # nearly parallel vectors fall back to lerp
    np.testing.assert_allclose(mixing.slerp(a, a * 1.0001, 0.5), mixing.lerp(a, a * 1.0001, 0.5), atol=1e-6)


def test_style_offset_points_from_the_content_to_the_weighted_style(rng):
    own = rng.standard_normal((2, 10)).astype(np.float32)
    a = mixing.StyleCode(rng.standard_normal(5), rng.uniform(0.5, 1.5, 5))
    b = mixing.StyleCode(rng.standard_normal(5), rng.uniform(0.5, 1.5, 5))
    np.testing.assert_array_equal(mixing.style_offset(own, a, strength=0.0), 0)  # strength 0: no offset
    np.testing.assert_allclose(mixing.style_offset(own, a, strength=1.0), a.vector - own, rtol=1e-5, atol=1e-6)
    off = mixing.style_offset(own, [a, b], weights=[3, 1], strength=0.5)
    np.testing.assert_allclose(off, 0.5 * (0.75 * a.vector + 0.25 * b.vector - own), rtol=1e-5, atol=1e-6)
    # masks: each style's coverage of the image; the uncovered rest keeps the content's code
    cov = mixing.style_offset(own, [a, b], strength=1.0, coverage=[np.array([0.5, 0.0]), np.array([0.25, 0.0])])
    np.testing.assert_allclose(cov[0], 0.5 * a.vector + 0.25 * b.vector - 0.75 * own[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cov[1], 0, atol=1e-6)
    with pytest.raises(StyleRTError, match="different model"):
        mixing.style_offset(own[:, :8], a)


def test_stylecode_from_codes_averages_and_the_latent_part_comes_first(rng):
    codes = rng.uniform(0.5, 1.5, (3, 12)).astype(np.float32)
    c = mixing.StyleCode.from_codes(codes)
    np.testing.assert_allclose(c.mean, codes[:, :6].mean(0), rtol=1e-6)
    np.testing.assert_allclose(c.std, codes[:, 6:].mean(0), rtol=1e-6)
    np.testing.assert_allclose(c.vector, codes.mean(0), rtol=1e-6)
    # the latent's AdaIN reads the first C entries of a longer code
    z = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(mixing.mix(z, c), mixing.adain(z, c.mean[:2], c.std[:2]), rtol=1e-5, atol=1e-6)


def test_the_value_check_at_its_edges():
    """StyleCode.out_of_range against a contract's style_ranges: every bound is accepted just
    inside and refused just outside; a weighted mix of accepted codes is accepted (each bound
    is convex)."""
    from stylert.engine.contract import ModelContract

    F, R, eps = mixing.RANGE_FACTOR, mixing.RMS_FACTOR, 1e-3

    def contract(rms):  # two levels of 2 channels: the latent (means of either sign), a ReLU level (means >= 0)
        return ModelContract(latent_channels=2, style_channels=(2, 2), style_limit=40.0,
                             style_ranges=((-1.0, 2.0, rms, 3.0, rms), (0.0, 4.0, rms, 0.5, rms)))

    wide, tight = contract(100.0), contract(1.0)  # RMS bounds out of the way, then in the way
    base_std = [1.0, 1.0, 0.2, 0.2]
    single = {  # one entry just inside / just outside its level's bound
        "the latent's lowest mean": (([F * -1.0 + eps, 0, 0, 0], base_std), ([F * -1.0 - eps, 0, 0, 0], base_std)),
        "the latent's highest mean": (([F * 2.0 - eps, 0, 0, 0], base_std), ([F * 2.0 + eps, 0, 0, 0], base_std)),
        "a ReLU level's mean below 0": (([0, 0, 0, 0], base_std), ([0, 0, -eps, 0], base_std)),
        "a ReLU level's highest mean": (([0, 0, F * 4.0 - eps, 0], base_std), ([0, 0, F * 4.0 + eps, 0], base_std)),
        "a level's largest std": (([0, 0, 0, 0], [1, 1, F * 0.5 - eps, .2]), ([0, 0, 0, 0], [1, 1, F * 0.5 + eps, .2])),
    }
    for name, (inside, outside) in single.items():
        assert StyleCode(*inside).out_of_range(wide) is None, name
        assert "outside the range" in StyleCode(*outside).out_of_range(wide), name
    # the RMS of a level: both entries at the bound's RMS
    assert StyleCode([R - eps, R - eps, 0, 0], [.5, .5, .2, .2]).out_of_range(tight) is None
    assert "RMS of the means at the latent" in StyleCode([R + eps, R + eps, 0, 0], [.5, .5, .2, .2]).out_of_range(tight)
    assert StyleCode([0, 0, 0, 0], [R - eps, R - eps, .2, .2]).out_of_range(tight) is None
    assert "RMS of the stds at the latent" in StyleCode([0, 0, 0, 0], [R + eps, R + eps, .2, .2]).out_of_range(tight)
    # the least std the encoder computes: sqrt(EPS)
    floor = float(np.sqrt(np.float32(EPS)))
    assert StyleCode([0, 0, 0, 0], [floor] * 4).out_of_range(tight) is None
    assert "least the encoder computes" in StyleCode([0, 0, 0, 0], [floor / 2, 1, 1, 1]).out_of_range(tight)
    # mixes of accepted codes stay accepted
    rng = np.random.default_rng(0)
    codes = [StyleCode(*single[k][0]) for k in single]
    for _ in range(20):
        assert mixing.combine(codes, rng.random(len(codes)) + 1e-3).out_of_range(wide) is None
    # an export made before the ranges existed: style_limit alone
    old = ModelContract(latent_channels=2, style_channels=(2, 2), style_limit=4.0)
    assert StyleCode([3.9, 0, 0, 0], [1, 1, 1, 1]).out_of_range(old) is None
    assert "up to 4" in StyleCode([4.1, 0, 0, 0], [1, 1, 1, 1]).out_of_range(old)
    with pytest.raises(ValueError, match="style_ranges"):
        ModelContract(latent_channels=2, style_channels=(2, 2), style_ranges=((0.0, 1.0, 1.0, 1.0, 1.0),))
    assert ModelContract.from_json(tight.to_json()) == tight


def test_palettes_hold_only_what_pixels_in_0_1_can_have():
    code = StyleCode(np.zeros(4), np.ones(4))
    ok = (np.array([0.2, 0.5, 0.9]), np.diag([0.2 * 0.8, 0.25, 0.09]) * 0.99)
    assert StyleCode(code.mean, code.std, rgb_mean=ok[0], rgb_cov=ok[1]).palette is not None
    for mean, cov in (([-2.0, 0.5, 0.5], np.eye(3) * 0.01), ([1.5, 0.5, 0.5], np.eye(3) * 0.01),
                      ([0.5, 0.5, 0.5], np.eye(3) * 0.26), ([0.1, 0.5, 0.5], np.diag([0.1, 0.01, 0.01]))):
        with pytest.raises(StyleRTError, match="palette"):
            StyleCode(code.mean, code.std, rgb_mean=mean, rgb_cov=cov)
