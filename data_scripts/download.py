"""Download a dataset in its original format into the layout minibnn.data reads.

    python data_scripts/download.py {mnist,fashion-mnist,cifar10,cifar100} [--dest DIR]

DIR defaults to $MINIBNN_DATA if set, else the user cache ($XDG_CACHE_HOME/minibnn or
~/.cache/minibnn), which load_dataset searches after --data-dir. Writes
DIR/mnist/*.gz, DIR/fashion-mnist/*.gz, DIR/cifar-10-batches-py/ and DIR/cifar-100-python/;
the CIFAR tarballs stay in DIR so a rerun skips the download. Every file is checked against the
published MD5 and written atomically. `mnist-t10k` ships inside the package and needs no download.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import common
from minibnn.data.datasets import LAYOUT, cache_dir
from minibnn.data.formats import PUBLISHED_MD5, DataError

__all__ = ["Source", "SOURCES", "download", "default_dest", "main"]


@dataclass(frozen=True)
class Source:
    """Base URLs tried in order, and either files fetched one by one or one archive to extract."""

    mirrors: tuple[str, ...]
    archive: str | None = None  # CIFAR: a .tar.gz holding the dataset folder


SOURCES: dict[str, Source] = {
    # LeCun's page is the original; the S3 copy is the mirror torchvision uses when it is down.
    "mnist": Source(("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/")),
    "fashion-mnist": Source(("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)),
    "cifar10": Source(("https://www.cs.toronto.edu/~kriz/",), archive="cifar-10-python.tar.gz"),
    "cifar100": Source(("https://www.cs.toronto.edu/~kriz/",), archive="cifar-100-python.tar.gz"),
}


def default_dest() -> Path:
    return Path(os.environ["MINIBNN_DATA"]).expanduser() if os.environ.get("MINIBNN_DATA") else cache_dir()


def download(name: str, dest: Path, log=print) -> Path:
    """Fetch and verify dataset `name` into dest/<folder>; returns that folder."""
    folder, files = LAYOUT[name]
    md5s, source = PUBLISHED_MD5[folder], SOURCES[name]
    dest.mkdir(parents=True, exist_ok=True)
    if common.is_complete(dest / folder, files, md5s):
        log(f"{dest / folder}: complete, MD5 ok")
        return dest / folder
    if source.archive is None:
        for f in files:
            common.fetch([m + f for m in source.mirrors], dest / folder / f, md5s[f], log)
        return dest / folder
    archive = common.fetch([m + source.archive for m in source.mirrors], dest / source.archive,
                           md5s[source.archive], log)
    return common.extract_tar(archive, dest, folder, files, md5s, log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=list(SOURCES))
    parser.add_argument("--dest", type=Path, default=None,
                        help="data root (default: $MINIBNN_DATA, else the user cache)")
    args = parser.parse_args(argv)
    dest = (args.dest or default_dest()).expanduser()
    try:
        folder = download(args.name, dest)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"ready: {folder}\nload it with load_dataset({args.name!r}, data_dir={str(dest)!r})"
          f" or --data-dir {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
