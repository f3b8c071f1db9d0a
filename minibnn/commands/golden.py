"""`minibnn golden OUT_DIR`: write the golden reference cases (.npz + manifest.json).

Each case holds the inputs, parameters, upstream gradients, expected outputs and gradients,
tolerances and conventions of one op, layer or method loss; `minibnn verify` checks a port
against them. The same --seed writes byte-identical files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import golden

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", nargs="?", help="folder to write manifest.json and one .npz "
                                                   "per case into (created if needed)")
    parser.add_argument("--only", metavar="NAMES", default=None,
                        help="comma-separated case names or patterns, e.g. "
                             "'quantizer.*,lcr.loss_official' (default: every case)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--list", action="store_true",
                        help="list the available cases with a one-line description and exit")


def run(args: argparse.Namespace) -> int:
    if args.list:
        names = golden.select_names(golden.case_names(), args.only)
        width = max(len(n) for n in names)
        for name in names:
            first = golden.SPECS[name].description.split(": ")[0].split(". ")[0]
            print(f"{name:<{width}}  {first}")
        return 0
    if args.out_dir is None:
        raise ValueError("give the folder to write the cases into, e.g. 'minibnn golden "
                         "golden_cases' (or --list to see the cases)")
    manifest = golden.write_golden(args.out_dir, only=args.only, seed=args.seed)
    cases = golden.read_manifest(args.out_dir)["cases"]
    out = Path(args.out_dir)
    size = sum((out / entry["file"]).stat().st_size for entry in cases.values())
    size += manifest.stat().st_size
    print(f"wrote {len(cases)} golden cases to {out} ({manifest.name} + {len(cases)} .npz, "
          f"{size / 1024:.0f} KB in all, seed {args.seed})")
    listed = {entry["file"] for entry in cases.values()}
    stale = sorted(p.name for p in out.glob("*.npz") if p.name not in listed)
    if stale:
        print(f"note: {len(stale)} other .npz files in {out} are not in the new manifest: "
              f"{', '.join(stale[:5])}{' ...' if len(stale) > 5 else ''}")
    print(f"check a port with: minibnn verify {out} --against my_module:my_function")
    return 0
