"""The backend and precision tables: every reader agrees with them, so adding a backend or a
precision is one entry (engine/backends/__init__.py, engine/precisions.py)."""

import argparse

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


def test_every_precision_has_its_converter_and_every_engine_backend_its_step():
    from stylert.engine.build import precision, stage

    assert set(precision.CONVERTERS) == set(precisions.PRECISIONS)
    assert all(callable(f) for f in precision.CONVERTERS.values())
    assert set(stage.BUILDERS) == set(ENGINE_BACKENDS) and all(callable(f) for f in stage.BUILDERS.values())


def test_every_runner_loads():
    pytest.importorskip("torch")
    for b in BACKENDS.values():  # the runner modules import their libraries only when used
        assert issubclass(b.runner_class(), Runner), b.name


def test_unknown_names_are_clear_errors():
    with pytest.raises(StyleRTError, match="unknown precision"):
        precisions.get("fp8")


def test_the_verbs_that_run_a_model_share_one_option_group():
    from stylert.engine.cli import build_parser
    from stylert.engine.options import ENGINE_FIELDS

    for verb in ("stylize", "serve", "loadtest"):
        sub = next(a for a in build_parser(verb)._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
        group = next(g for g in sub._action_groups if g.title == "model and engine")
        assert [a.dest for a in group._group_actions] == list(ENGINE_FIELDS), verb
        assert {a.dest: a.choices for a in group._group_actions}["backend"] == ["auto", *BACKENDS], verb
