"""`stylert <verb>`: a thin layer over the dataclass configurations.

Each verb's module is imported only when that verb runs, so `stylert --help` and the runtime
verbs work without torch installed. Users' mistakes (StyleRTError) print one clear message
and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from .errors import StyleRTError


def fmt(description: str, example: str) -> dict:
    return dict(
        description=textwrap.dedent(description).strip(),
        epilog="example:\n" + textwrap.indent(textwrap.dedent(example).strip(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# ----------------------------------------------------------------------------- main
# Each stage adds its own verbs: the entry points `stylert.verbs` in pyproject.toml name the
# function beside the stage that builds its subparser, so this module names no other stage.
# Every parser module is torch-free (export/cli.py imports torch only when a verb runs).
def verbs() -> dict:
    """{verb: its entry point}, in the pipeline's order (pyproject.toml's)."""
    from .backends import _entry_point

    _entry_point("stylert.verbs", "stylize", "")  # a clear error when the package is not installed
    from importlib.metadata import distribution

    eps = [ep for ep in distribution("stylert").entry_points if ep.group == "stylert.verbs"]
    order = ("train", "evaluate", "export-onnx", "build-engine", "stylize", "serve", "bench", "loadtest")
    return {ep.name: ep for ep in sorted(eps, key=lambda ep: order.index(ep.name) if ep.name in order else len(order))}


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `verb`, only that verb's subparser (its module alone is imported:
    a tenth of a second of every `stylert stylize` call went to building the others)."""
    parser = argparse.ArgumentParser(
        prog="stylert",
        **fmt(
            """
            StyleRT: style transfer with a convolutional VAE on an optimized inference engine.
            The pipeline: train -> export-onnx -> build-engine -> stylize / serve -> bench.
            Run `stylert VERB --help` for each verb's options and an example.
            """,
            """
            stylert export-onnx --out out/export          # the shipped model -> verified ONNX
            stylert build-engine out/export --int8        # INT8 artifact + accuracy report
            stylert stylize photos/ --style painting.jpg --out stylized/
            stylert bench --batch 16
            stylert serve --port 8000                     # HTTP on Ray Serve: POST /v1/stylize
            """,
        ),
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, ep in verbs().items():
        if verb in (None, name):
            ep.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv and argv[0] in verbs() else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StyleRTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _verb_main(verb: str):
    def entry(argv: list[str] | None = None) -> int:
        return main([verb, *(sys.argv[1:] if argv is None else argv)])

    return entry


export_onnx_main = _verb_main("export-onnx")
build_engine_main = _verb_main("build-engine")
bench_main = _verb_main("bench")


if __name__ == "__main__":
    sys.exit(main())
