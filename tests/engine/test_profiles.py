import pytest

from stylert.engine.contract import ModelContract
from stylert.engine.errors import StyleRTError
from stylert.engine.build.profiles import ProfileSpec, profile_shapes

C = ModelContract(latent_channels=16)


def test_default_profile_shapes():
    s = profile_shapes(ProfileSpec(), C)
    assert s["encoder"]["image"] == {"min": (1, 3, 64, 64), "opt": (16, 3, 256, 256), "max": (32, 3, 512, 512)}
    assert s["decoder"]["latent"] == {"min": (1, 16, 8, 8), "opt": (16, 16, 32, 32), "max": (32, 16, 64, 64)}


def test_custom_profile_follows_contract():
    c = ModelContract(latent_channels=4, downsample=8)
    s = profile_shapes(ProfileSpec(2, 4, 8, 128, 128, 1024), c)
    assert s["decoder"]["latent"]["max"] == (8, 4, 128, 128)
    assert s["encoder"]["image"]["opt"] == (4, 3, 128, 128)


@pytest.mark.parametrize(
    "spec, words",
    [
        (ProfileSpec(min_batch=4, opt_batch=2, max_batch=8), "batch range"),
        (ProfileSpec(min_batch=0), "batch range"),
        (ProfileSpec(min_size=512, opt_size=256, max_size=512), "size range"),
        (ProfileSpec(opt_size=250), "multiples of 8"),
    ],
)
def test_invalid_profiles_raise(spec, words):
    with pytest.raises(StyleRTError, match=words):
        profile_shapes(spec, C)
