"""The backend and precision tables: every reader agrees with them, so adding a backend or a
precision is one entry (engine/backends/__init__.py, engine/precisions.py)."""

import pytest

from stylert.engine import manifest, precisions
from stylert.engine.backends import BACKENDS, ENGINE_BACKENDS
from stylert.engine.backends.base import Runner
from stylert.engine.errors import StyleRTError


def test_every_backend_names_a_runner_that_imports_without_its_library():
    for b in BACKENDS.values():
        cls = b.runner_class()  # the runner module imports its library lazily
        assert issubclass(cls, Runner) and cls.name == b.name


def test_readers_take_their_choices_from_the_tables():
    import argparse

    from stylert.engine import runtime, stylize
    from stylert.engine.build import stage as build

    assert set(runtime.BACKENDS) == {"auto", *BACKENDS}
    assert manifest.BACKENDS == ENGINE_BACKENDS and set(manifest.PRECISIONS) == set(precisions.PRECISIONS)
    assert build.DEFAULT_MIN_PSNR == {n: p.min_psnr for n, p in precisions.PRECISIONS.items()}
    sub = argparse.ArgumentParser().add_subparsers()
    stylize.add_parser(sub)
    p = sub.choices["stylize"]
    choices = {a.dest: a.choices for a in p._actions if a.choices}
    assert set(choices["backend"]) == {"auto", *BACKENDS} and set(choices["precision"]) == set(precisions.PRECISIONS)


def test_every_precision_has_its_converter():
    for name in precisions.PRECISIONS:
        assert callable(precisions.converter(name))


def test_unknown_names_are_clear_errors():
    with pytest.raises(StyleRTError, match="unknown precision"):
        precisions.get("fp8")
