"""Shared helpers for the download scripts: fetch a file with an MD5 check and an atomic write,
and extract an archive safely into the layout minibnn.data.datasets reads.

Standard library only (urllib, tarfile). The checksum table and folder layout come from
minibnn.data (one source of truth); nothing here parses image data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # lets the scripts run from a checkout without `pip install -e .`

from minibnn.data.formats import DataError, md5sum  # noqa: E402

__all__ = ["open_url", "fetch", "extract_tar", "is_complete"]

CHUNK = 1 << 20
Log = Callable[[str], None]


def open_url(url: str, timeout: float = 60.0):
    """The only network call (tests replace it). Returns a readable, closable response."""
    return urllib.request.urlopen(url, timeout=timeout)


def _download_verified(url: str, dest: Path, md5: str) -> None:
    """Stream url into a temp file beside dest, check its MD5, then os.replace it into place.

    On any failure (network error, MD5 mismatch, interrupt) the temp file is removed, so dest is
    either the old file, absent, or the complete verified new file.
    """
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out, open_url(url) as response:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise DataError(f"{url}: MD5 mismatch, expected {md5} (published) but found {digest.hexdigest()}")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch(urls: list[str], dest: Path, md5: str, log: Log = print) -> Path:
    """Make dest a verified copy of the file at the first of `urls` (mirrors) that works.

    A dest that already matches md5 is kept. Raises DataError listing every URL's failure.
    """
    if dest.is_file() and md5sum(dest) == md5:
        log(f"{dest}: present, MD5 ok")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        log(f"downloading {url} -> {dest}")
        try:
            _download_verified(url, dest, md5)
            return dest
        except (OSError, DataError) as err:  # urllib.error.URLError is an OSError
            errors.append(f"{url}: {err}")
    raise DataError(f"could not fetch {dest.name}:\n  " + "\n  ".join(errors))


def is_complete(folder: Path, files: tuple[str, ...], md5s: dict[str, str]) -> bool:
    """True if folder holds every file and those with a published sum match it."""
    return all((folder / f).is_file() and (f not in md5s or md5sum(folder / f) == md5s[f]) for f in files)


def _safe_extractall(tar: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: refuses '..', absolute paths, devices
        tar.extractall(dest, filter="data")
        return
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(dest.resolve()):
            raise DataError(f"{tar.name}: refusing to extract {member.name!r} "
                            f"(a link, a device, or outside {dest})")
    tar.extractall(dest)


def extract_tar(archive: Path, dest_root: Path, folder: str, files: tuple[str, ...],
                md5s: dict[str, str], log: Log = print) -> Path:
    """Extract the top-level `folder` of a .tar.gz to dest_root/folder, all or nothing.

    Extracts into a temp folder inside dest_root, checks that every name in `files` is there and
    matches md5s (where listed), then swaps it in with os.replace (replacing an old copy).
    """
    log(f"extracting {archive} -> {dest_root / folder}")
    tmp = Path(tempfile.mkdtemp(dir=dest_root, prefix=f".{folder}.", suffix=".part"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            _safe_extractall(tar, tmp)
        src = tmp / folder
        missing = [f for f in files if not (src / f).is_file()]
        if missing:
            raise DataError(f"{archive}: expected {folder}/{{{', '.join(files)}}}, "
                            f"missing {', '.join(missing)}; found {sorted(p.name for p in tmp.rglob('*'))}")
        bad = [f for f in files if f in md5s and md5sum(src / f) != md5s[f]]
        if bad:
            raise DataError(f"{archive}: extracted {', '.join(bad)} do not match the published MD5 sums")
        target = dest_root / folder
        if target.exists():
            shutil.rmtree(target)
        os.replace(src, target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
