"""Download a data-set file with a progress bar, check its MD5 and unpack archives safely.

Only ever called when the user passed ``--download``; tests drive it with ``file://`` URLs of files they
wrote themselves, so no test touches the network.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from photocluster.errors import UsageError

_CHUNK = 1 << 20


def md5_of(path: str | Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks (the data set authors publish MD5 sums)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, destination: str | Path, md5: str | None = None, progress: bool = True) -> Path:
    """Fetch ``url`` to ``destination`` (via a ``.part`` file), then verify ``md5`` when given.

    An existing file with the right checksum is kept and not fetched again.

    Parameters
    ----------
    url:
        http(s) or file URL.
    destination:
        Target file path; parent folders are created.
    md5:
        Expected hex MD5, or None to skip the check.
    progress:
        Show a tqdm bar with bytes and rate.

    Returns
    -------
    Path
        The downloaded file.

    Raises
    ------
    UsageError
        The download failed or the checksum does not match (the partial file is removed).
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists() and (md5 is None or md5_of(destination) == md5):
        return destination
    partial = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (URLs come from our table)
            total = response.headers.get("Content-Length")
            from tqdm import tqdm

            with open(partial, "wb") as out, tqdm(
                total=int(total) if total else None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"downloading {destination.name}",
                disable=not progress,
            ) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
    except OSError as exc:  # URLError is an OSError
        partial.unlink(missing_ok=True)
        raise UsageError(f"could not download {url}: {exc}") from None
    if md5 is not None:
        actual = md5_of(partial)
        if actual != md5:
            partial.unlink(missing_ok=True)
            raise UsageError(f"checksum mismatch for {url}: expected MD5 {md5}, got {actual}; the file was removed")
    partial.replace(destination)
    return destination


def _inside(root: Path, member_name: str) -> bool:
    target = (root / member_name).resolve()
    return target == root or root in target.parents


def extract_archive(archive: str | Path, destination: str | Path) -> Path:
    """Unpack a ``.tar.gz`` / ``.tar`` / ``.zip`` / ``.gz`` into ``destination``.

    Members that would land outside ``destination`` (absolute paths, ``..``), links and device files are
    refused: a downloaded archive is untrusted input.
    """
    archive = Path(archive)
    destination = Path(destination).resolve()
    destination.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                if not (member.isfile() or member.isdir()) or not _inside(destination, member.name):
                    raise UsageError(f"{archive.name}: refusing unsafe archive member {member.name!r}")
            tar.extractall(destination, members=members, filter="data")
    elif name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for member_name in zf.namelist():
                if not _inside(destination, member_name):
                    raise UsageError(f"{archive.name}: refusing unsafe archive member {member_name!r}")
            zf.extractall(destination)
    elif name.endswith(".gz"):
        # IDX files are used gzipped as they come; nothing to unpack.
        pass
    else:
        raise UsageError(f"do not know how to unpack {archive.name}")
    return destination
