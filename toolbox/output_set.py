"""A job's output files as one set: they appear together in the output folder, or not at all.

A job writes every file into a hidden staging folder beside its output folder
(``.<name>.<pid>-<random>.part``) and then commits: the staging folder becomes the output folder in
one rename. An earlier run's outputs in that folder are replaced as a whole (an atomic exchange of
the two folders where the filesystem offers one, else two renames), so a reader never sees new
files beside old ones. A job that fails or is interrupted leaves nothing behind: no output folder
if there was none, the earlier run's outputs untouched if there were. Staging folders of killed
runs are removed by the next run into the same folder (toolbox.atomic.remove_stale_parts).

Only an empty folder or an earlier output set (one holding the manifest ``.deepvis-outputs.json``,
which lists the job and its files) is replaced; a folder with other files in it is refused before
any work, so ``--out ~/Desktop`` never deletes anything.

Usage::

    with OutputSet(out_dir, job="analyze") as outputs:
        outputs.write_json("summary.json", {...})             # -> out_dir/summary.json once committed
        with open(outputs.path("frames.jsonl"), "w") as f:    # any writer: write to outputs.path(name)
            ...
    # committed on leaving the block without an error; discarded (nothing written) on an error
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from toolbox.atomic import (check_parent_folders, encode_image, make_folders, remove_empty_folders, remove_stale_parts,
                            user_write_errors)
from toolbox.errors import DeepvisError

MANIFEST = ".deepvis-outputs.json"


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where not offered."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except AttributeError:  # glibc before 2.28, musl
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # this filesystem cannot exchange
        return False
    raise OSError(code, os.strerror(code), str(b))


def check_output_folder(folder: str | os.PathLike, job: str | None = None) -> Path:
    """``folder`` if an output set of ``job`` may be written there (missing, empty, or an earlier
    output set of the same job), else a DeepvisError naming the problem; symbolic links are followed."""
    folder = Path(folder).expanduser()
    if folder.is_symlink():
        folder = folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise DeepvisError(f"--out {folder} is a file, not a folder: give a new folder name")
    check_parent_folders(folder)
    manifest = folder / MANIFEST
    if job is not None and manifest.is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            earlier = json.loads(manifest.read_text()).get("job")
            if earlier != job:
                raise DeepvisError(f"--out {folder} holds the outputs of deepvis {earlier}: give another folder, "
                                   f"deepvis {job} would replace them")
    if folder.is_dir() and not manifest.is_file():
        with user_write_errors(folder):
            others = sorted(p.name for p in folder.iterdir())
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise DeepvisError(f"--out {folder} already holds files deepvis did not write ({shown}): "
                               "give a new or empty folder")
    return folder


class OutputSet:
    """The files of one job run, staged beside ``folder`` and moved into it together (module docstring).

    ``folder``: the output folder (created on commit). ``job``: recorded in the manifest.
    Checks the folder and creates the staging folder at once, so an unusable ``--out`` (a file, a
    folder of other files, read-only) is a DeepvisError before the job does any work.
    """

    def __init__(self, folder: str | os.PathLike, job: str):
        self.folder = check_output_folder(folder, job)
        self.job = job
        self.committed = False
        with user_write_errors(self.folder):
            self._created_parents = make_folders(self.folder.parent)
            remove_stale_parts(self.folder)
            self.staging = self.folder.with_name(f".{self.folder.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
            try:
                self.staging.mkdir()
            except BaseException:
                remove_empty_folders(self._created_parents)
                raise

    # -- writing ---------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """Where to write the output ``name`` (relative, e.g. "features/00_conv.png") now; its folders exist."""
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"output name {name!r} must be a relative path inside the output folder")
        if self.committed:
            raise RuntimeError("the output set is already committed")
        staged = self.staging / relative
        with user_write_errors(self.final_path(name)):
            staged.parent.mkdir(parents=True, exist_ok=True)
        return staged

    def final_path(self, name: str) -> Path:
        """Where the output ``name`` will be once the set is committed."""
        return self.folder / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write one output; -> its final path."""
        staged = self.path(name)
        with user_write_errors(self.final_path(name)):
            staged.write_bytes(data)
        return self.final_path(name)

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode())

    def write_json(self, name: str, obj) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2) + "\n")

    def write_image(self, name: str, image: np.ndarray) -> Path:
        """(H, W, 3) uint8 BGR image; the format follows the suffix (.png, .jpg)."""
        return self.write_bytes(name, encode_image(name, image))

    def files(self) -> list[str]:
        """Relative names of the outputs written so far, sorted."""
        return sorted(p.relative_to(self.staging).as_posix() for p in self.staging.rglob("*") if p.is_file())

    # -- finishing -------------------------------------------------------------------------------
    def commit(self) -> Path:
        """Move the set into ``folder``, replacing an earlier output set there as a whole; -> folder."""
        if self.committed:
            return self.folder
        with user_write_errors(self.folder):
            manifest = {"job": self.job, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": self.files()}
            (self.staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            check_output_folder(self.folder, self.job)  # it may have changed while the job ran
            if not self._rename_if_absent():
                self._replace_earlier_set()
        self.committed = True
        return self.folder

    def _replace_earlier_set(self) -> None:
        """Swap the staging folder with ``folder`` in one step where possible, else in two renames."""
        if _exchange(self.staging, self.folder):
            shutil.rmtree(self.staging, ignore_errors=True)  # now the earlier outputs
            return
        old = self.staging.with_name(f".{self.folder.name}.{os.getpid()}-{secrets.token_hex(4)}.old.part")
        os.rename(self.folder, old)
        os.rename(self.staging, self.folder)
        shutil.rmtree(old, ignore_errors=True)

    def _rename_if_absent(self) -> bool:
        """Rename the staging folder to ``folder`` if nothing is there (or an empty folder); -> whether it did.
        A set committed by another run in the meantime is left for the exchange."""
        try:
            os.rename(self.staging, self.folder)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise
        return True

    def discard(self) -> None:
        """Remove everything staged (and the parent folders this set created); the output folder is untouched."""
        shutil.rmtree(self.staging, ignore_errors=True)
        remove_empty_folders(self._created_parents)

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()
