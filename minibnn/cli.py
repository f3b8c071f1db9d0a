"""The `minibnn` command line: one subcommand per job, each in its own module.

Every subcommand module exposes `add_arguments(parser)` and `run(args) -> int`; this file only
builds the parser, imports the module that is asked for (so `minibnn --help` stays instant), and
turns expected failures into a one-line message and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from . import __version__
from .allocator import keep_freed_memory

__all__ = ["main", "build_parser", "COMMANDS"]

# name -> (module, one-line help). Nested groups (bench) map to a dict of the same.
COMMANDS: dict = {
    "train": ("minibnn.commands.train", "train a binary (or real-valued) network"),
    "eval": ("minibnn.commands.evaluate", "evaluate a checkpoint (or a packed model) on a dataset"),
    "summary": ("minibnn.commands.summary", "per-layer parameters, bits, memory, FLOPs and BOPs of a model"),
    "plot": ("minibnn.commands.plot", "draw the training curves of a run folder to PNG"),
    "export": ("minibnn.commands.export", "export a trained checkpoint to a bit-packed model (.npz)"),
    "robustness": ("minibnn.commands.robustness", "accuracy under seeded corruptions, mCE vs a baseline"),
    "pretrain": ("minibnn.commands.pretrain", "self-supervised pre-training (MoCo v2) of a teacher"),
    "linear-eval": ("minibnn.commands.linear_eval", "linear evaluation of a frozen backbone"),
    "golden": ("minibnn.commands.golden", "write golden reference cases for other frameworks"),
    "verify": ("minibnn.commands.verify", "check a user's implementation against golden cases"),
    "sweep": ("minibnn.commands.sweep", "run a sweep spec (TOML): arms x axes x seeds, locally or on Dask"),
    "report": ("minibnn.commands.report", "table and curves of a sweep: mean +- std, paired differences"),
    "bench": {
        "autograd": ("minibnn.bench.autograd", "conv+BN+ReLU forward/backward vs PyTorch"),
        "kernels": ("minibnn.bench.kernels", "packed XNOR-popcount conv vs float convs, per layer"),
        "model": ("minibnn.bench.model", "whole-network packed inference vs float inference"),
        "cmim": ("minibnn.bench.cmim", "cost of the CMIM contrastive term in a training step"),
        "sweep": ("minibnn.bench.sweep", "a 6-run sweep: --jobs 1 vs --jobs 2, Dask vs local"),
    },
}

EPILOG = """examples:
  minibnn train                          train the default binary CNN on the bundled MNIST data
  minibnn train --model vgg-small --width 0.25 --epochs 5
  minibnn summary cnn                    layer table with bits, memory, FLOPs and BOPs
  minibnn bench autograd                 time the autograd engine against PyTorch
run 'minibnn COMMAND --help' for the options of each command."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says it or the default is None
    (an unset option, whose help says what happens then)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default is None:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command and the fix."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _available(module: str) -> bool:
    """Commands whose module is not part of this installation are left out of the parser."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _add_commands(subparsers, table: dict, prefix: str) -> None:
    for name, entry in table.items():
        if isinstance(entry, dict):
            group = subparsers.add_parser(name, help=f"{name}: " + ", ".join(entry),
                                          description=f"minibnn {name} subcommands")
            nested = group.add_subparsers(dest=f"{prefix}{name}_command", metavar="WHAT",
                                          parser_class=_Parser, required=True)
            _add_commands(nested, entry, f"{prefix}{name}_")
            continue
        module, help_text = entry
        if not _available(module):
            continue
        sub = subparsers.add_parser(name, help=help_text, description=help_text,
                                    formatter_class=_HelpFormatter)
        importlib.import_module(module).add_arguments(sub)
        sub.set_defaults(_module=module)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="minibnn", description="minibnn: binary neural networks in NumPy and Numba.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                                       required=True)
    _add_commands(subparsers, COMMANDS, "")
    return parser


def _version() -> str:
    return f"minibnn {__version__}"


def _explicit_options(parser: argparse.ArgumentParser, argv: list[str], command: str) -> set:
    """The dests of the options the user actually typed after COMMAND (defaults left out), so a
    command can refuse options that do not apply instead of silently ignoring them."""
    sub = next((a.choices[command] for a in parser._actions
                if isinstance(a, argparse._SubParsersAction) and command in a.choices), None)
    if sub is None or command not in argv:
        return set()
    for action in sub._actions:
        action.default = argparse.SUPPRESS
    try:
        given, _ = sub.parse_known_args(argv[argv.index(command) + 1:])
    except SystemExit:           # cannot happen after a successful parse; be safe anyway
        return set()
    return {dest for dest in vars(given) if not dest.startswith("_")}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args._explicit = _explicit_options(parser, argv, args.command)
    keep_freed_memory()       # NumPy's big temporaries reuse heap pages (see allocator.py)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("\nminibnn: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, FileNotFoundError, OSError) as err:
        # Expected failures (bad values, missing or corrupt files) carry a message that says
        # what was expected and what was found; show it without a traceback.
        print(f"minibnn {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
