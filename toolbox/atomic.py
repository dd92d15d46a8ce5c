"""Atomic output files: written under a temporary name, renamed into place only when complete.

An interrupted run therefore never leaves a half-written file under the final name.

Temporary names are ``.<stem>.<pid>-<random>.part<suffix>`` beside the final file: unique per
process and call, hidden, and keeping the final suffix so that writers choosing a format by
extension (cv2.VideoWriter) still work. A temporary whose process is gone (a killed run) is
stale: the next write of the same final name removes it. Files are created with mode 0666 less
the umask (0644 under the usual 022), like any other program's output.

Write failures that are the user's machine, not a bug (disk full, ``ulimit -f``, a read-only
folder or filesystem) become a one-line DeepvisError naming the file and the fix.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from toolbox.errors import DeepvisError

# errno -> what to do about it; the OSErrors a job turns into one line instead of a traceback
WRITE_FAILURES = {
    errno.ENOSPC: "the disk is full: free some space or choose another --out",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another --out",
    errno.EFBIG: "the file size limit was reached (ulimit -f): raise the limit or write less (--max-frames)",
    errno.EROFS: "the filesystem is read-only: choose another --out",
    errno.EACCES: "no permission to write there: choose a writable --out folder",
    errno.EPERM: "no permission to write there: choose a writable --out folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another --out",
    errno.EISDIR: "it is a folder: give a file name",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter --out",
}


def write_failure(path: str | os.PathLike, error: OSError) -> DeepvisError | None:
    """The one-line DeepvisError for an OSError ``error`` while writing ``path``; None for other errors."""
    fix = WRITE_FAILURES.get(error.errno)
    if fix is None:
        return None
    return DeepvisError(f"cannot write {path}: {fix}")


@contextlib.contextmanager
def user_write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn the OSErrors listed in WRITE_FAILURES raised inside the block into a DeepvisError naming ``path``."""
    try:
        yield
    except OSError as error:
        failure = write_failure(path, error)
        if failure is None:
            raise
        raise failure from None


def check_parent_folders(path: str | os.PathLike) -> None:
    """DeepvisError if a file stands where a folder above ``path`` should be (``--out notes.txt/sub``)."""
    for parent in Path(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise DeepvisError(f"cannot write {path}: {parent} is a file, not a folder; choose another --out")
            return


def check_writable_folder(folder: str | os.PathLike, option: str = "--out") -> Path:
    """``folder`` if files can be created in it (or in the nearest existing folder above, where it will
    be made), checked by creating and removing a temporary file; else a one-line DeepvisError. Creates nothing."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise DeepvisError(f"{option} {folder} is a file, not a folder: give a folder name")
    check_parent_folders(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    probe = part_name(existing / "write-test")
    with user_write_errors(folder):
        os.close(create_exclusive(probe))
        probe.unlink()
    return folder


def make_folders(folder: str | os.PathLike) -> list[Path]:
    """Create ``folder`` and any missing folders above it; -> the folders created, deepest first
    (for remove_empty_folders when the job fails)."""
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return created


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove these folders (deepest first) where they are empty: what a failed job made and left unused."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _umask() -> int:
    """The process umask, read without changing it (Linux), else by setting and restoring it."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode for a new output file: 0666 less the umask (0644 under umask 022)."""
    return 0o666 & ~_umask()


def part_name(final: str | os.PathLike) -> Path:
    """A fresh, unique temporary name beside ``final``: ``.<stem>.<pid>-<random>.part<suffix>``."""
    final = Path(final)
    return final.with_name(f".{final.stem}.{os.getpid()}-{secrets.token_hex(4)}.part{final.suffix}")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_parts(final: str | os.PathLike) -> list[Path]:
    """Remove temporaries of ``final`` (files or folders) left by processes that no longer run; -> removed.

    Matches what part_name and toolbox.output_set make for the same final name; a live process's
    temporaries (another run writing the same name now) are left alone.
    """
    final = Path(final)
    pattern = re.compile(
        rf"^\.(?:{re.escape(final.stem)}\.(\d+)-[0-9a-f]{{8}}\.part{re.escape(final.suffix)}"
        rf"|{re.escape(final.name)}\.(\d+)-[0-9a-f]{{8}}\.(?:old\.)?part)$")
    removed = []
    try:
        siblings = list(final.parent.iterdir())
    except OSError:  # no folder yet, or not readable: nothing of ours there
        return removed
    for sibling in siblings:
        match = pattern.match(sibling.name)
        if match is None or _process_alive(int(match.group(1) or match.group(2))):
            continue
        with contextlib.suppress(OSError):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling)
            else:
                sibling.unlink()
            removed.append(sibling)
    return removed


def create_exclusive(path: str | os.PathLike) -> int:
    """Create ``path`` as a new empty file (O_EXCL: fails with FileExistsError if it exists); -> open fd."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)


@contextlib.contextmanager
def temporary_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``final`` (part_name), removed at the end if still there.

    The temporary exists (empty, mode 0666 less the umask) when the block starts; writers may
    replace it. Stale temporaries of ``final`` from killed runs are removed first. Write failures
    of the user's machine (disk full, size limit, read-only) become DeepvisError.
    """
    final = Path(final)
    with user_write_errors(final):
        if final.is_dir():
            raise DeepvisError(f"cannot write {final}: it is a folder; give a file name or another --out")
        check_parent_folders(final)
        created = make_folders(final.parent)
        remove_stale_parts(final)
        tmp = part_name(final)
        try:
            os.close(create_exclusive(tmp))
            yield tmp
        except BaseException:
            tmp.unlink(missing_ok=True)
            remove_empty_folders(created)
            raise
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final`` (temporary_path); rename it to ``final`` if the block
    succeeds, remove it if not."""
    with temporary_path(final) as tmp:
        yield tmp
        os.replace(tmp, final)


def write_bytes(final: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def write_text(final: str | os.PathLike, text: str) -> Path:
    return write_bytes(final, text.encode())


def write_json(final: str | os.PathLike, obj) -> Path:
    return write_text(final, json.dumps(obj, indent=2) + "\n")


def encode_image(path: str | os.PathLike, image: np.ndarray) -> bytes:
    """A BGR uint8 image encoded in the format of ``path``'s suffix (.png, .jpg, ...)."""
    ok, data = cv2.imencode(Path(path).suffix or ".png", image)
    if not ok:
        raise DeepvisError(f"cannot encode an image as {Path(path).suffix} for {path}: use .png or .jpg")
    return data.tobytes()


def write_image(final: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a BGR uint8 image; the format follows the extension (.png, .jpg)."""
    return write_bytes(final, encode_image(final, image))


def publish_exclusive(tmp: str | os.PathLike, final: str | os.PathLike) -> bool:
    """Give the complete file ``tmp`` the name ``final`` unless that name exists; -> whether it did.

    The name is created with a hard link, which fails if it exists, so of two processes publishing
    the same name at once exactly one succeeds and nothing is overwritten. Where hard links are not
    supported (FAT, some FUSE) the name is reserved with O_EXCL and then replaced.
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        try:
            os.close(create_exclusive(final))
        except FileExistsError:
            return False
        os.replace(tmp, final)
        return True
    os.unlink(tmp)
    return True


def publish_unique(tmp: str | os.PathLike, directory: str | os.PathLike, stem: str, suffix: str,
                   start: int = 0) -> Path:
    """Give the complete file ``tmp`` the name ``directory/stem-NNNN.suffix`` with the first number
    >= ``start`` not taken, exclusively (publish_exclusive): never overwrites; -> the name."""
    directory = Path(directory)
    n = start
    with user_write_errors(directory):
        while not publish_exclusive(tmp, directory / f"{stem}-{n:04d}{suffix}"):
            n += 1
    return directory / f"{stem}-{n:04d}{suffix}"


def write_unique_image(directory: str | os.PathLike, stem: str, suffix: str, image: np.ndarray) -> Path:
    """Write ``image`` as ``directory/stem-NNNN.suffix`` under a number no other file has (publish_unique)."""
    directory = Path(directory)
    with temporary_path(directory / f"{stem}{suffix}") as tmp:
        tmp.write_bytes(encode_image(tmp, image))
        return publish_unique(tmp, directory, stem, suffix)
