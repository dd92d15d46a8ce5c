"""Bad inputs as data: each row is (id, command line, expected message fragment, exit code).

Every row runs ``deepvis`` in-process (toolbox.cli.main) and checks the specification every
command shares: the exit code, exactly one line on stderr starting ``deepvis: error:`` that holds
the fragment (no traceback), and nothing written: the row's scratch folder and the shared inputs
are byte for byte as before (no output folder, no temporaries).

To add a case, add one Row. Placeholders in the command line:
  {out}       a path in the row's fresh scratch folder that does not exist yet
  {tmp}       the row's scratch folder itself (exists, empty)
  {cat}       a good photo (PNG)             {cat_jpg} the same as JPEG
  {clip}      a short good video (MP4)       {text_jpg} a text file named .jpg
  {int32_tif} a 32-bit integer TIFF          {binary_yaml} a binary file named .yaml
  {file}      an existing text file          {busy} a folder holding someone else's file
  {onnx}      a tiny ONNX classifier         {bad_folder} a folder of undecodable images only
  {weights_other} a state dict of another architecture (resnet18) {junk_pth} a .pth that is no state dict
``fault``: the name of an injected fault (FAULTS) active while the row runs, e.g. a full disk.
"""
from __future__ import annotations

import errno
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from toolbox.cli import main


@dataclass(frozen=True)
class Row:
    id: str
    command: str
    fragment: str
    code: int = 2
    fault: str | None = None


ROWS = [
    # --- analyze: output folder -------------------------------------------------------------
    Row("analyze-out-is-a-file", "analyze {cat} --out {file} --max-frames 1 --quiet", "is a file, not a folder"),
    Row("analyze-out-holds-other-files", "analyze {cat} --out {busy} --max-frames 1 --quiet",
        "already holds files deepvis did not write"),
    Row("analyze-out-is-a-video-name", "analyze {cat} --out {out}.mp4 --max-frames 1 --quiet",
        "names a .mp4 file, but deepvis analyze writes a folder"),
    Row("analyze-out-below-a-file", "analyze {cat} --out {file}/sub --max-frames 1 --quiet", "cannot write"),
    Row("analyze-out-not-permitted", "analyze {cat} --out /sys/fs/deepvis-test-out --max-frames 1 --quiet",
        "no permission to write"),
    Row("analyze-out-read-only-fs", "analyze {cat} --out {out} --max-frames 1 --quiet", "read-only", fault="rofs"),
    Row("analyze-disk-full", "analyze {cat} --out {out} --max-frames 1 --quiet", "the disk is full", fault="enospc"),
    Row("analyze-video-writer-fails-silently", "analyze {clip} --out {out} --max-frames 2 --quiet",
        "cannot write video", fault="silent_video_writer"),
    # --- analyze: arguments -----------------------------------------------------------------
    Row("analyze-max-frames-0", "analyze {cat} --out {out} --max-frames 0 --quiet", "--max-frames must be 1 or more"),
    Row("analyze-max-frames-negative", "analyze {cat} --out {out} --max-frames -3 --quiet",
        "--max-frames must be 1 or more"),
    Row("analyze-every-0", "analyze {cat} --out {out} --every 0 --quiet", "--every must be 1 or more"),
    Row("analyze-device-tpu", "analyze {cat} --out {out} --device tpu --quiet", "unknown device 'tpu'"),
    Row("analyze-unknown-model", "analyze {cat} --out {out} --model nosuchnet --quiet", "unknown model 'nosuchnet'"),
    Row("analyze-unknown-layer", "analyze {cat} --out {out} --layer _blocks.99 --quiet", "_blocks.99"),
    Row("analyze-unknown-saliency", "analyze {cat} --out {out} --saliency nosuch --quiet", "nosuch"),
    Row("analyze-labels-missing", "analyze {cat} --out {out} --labels {tmp}/nope.txt --quiet",
        "--labels file not found"),
    Row("analyze-weights-missing", "analyze {cat} --out {out} --weights {tmp}/nope.pth --quiet",
        "weights file not found"),
    Row("analyze-weights-not-a-state-dict", "analyze {cat} --out {out} --weights {junk_pth} --quiet",
        "not a state dict"),
    Row("analyze-weights-of-another-model", "analyze {cat} --out {out} --weights {weights_other} --quiet",
        "do not fit model lite0"),
    # --- analyze: inputs --------------------------------------------------------------------
    Row("analyze-missing-source", "analyze {tmp}/nope.mp4 --out {out} --quiet", "no such file or folder"),
    Row("analyze-undecodable-image", "analyze {text_jpg} --out {out} --quiet", "cannot decode image"),
    Row("analyze-int32-tiff", "analyze {int32_tif} --out {out} --quiet", "32-bit int32"),
    Row("analyze-folder-of-bad-images", "analyze {bad_folder} --out {out} --quiet", "no readable image"),
    Row("analyze-binary-config", "analyze {cat} --out {out} --config {binary_yaml} --quiet", "is not a text file"),
    Row("analyze-missing-config", "analyze {cat} --out {out} --config {tmp}/nope.yaml --quiet",
        "config file not found"),
    # --- inspect ----------------------------------------------------------------------------
    Row("inspect-out-is-a-file", "inspect {cat} --out {file}", "is a file, not a folder"),
    Row("inspect-out-holds-other-files", "inspect {cat} --out {busy}", "already holds files deepvis did not write"),
    Row("inspect-out-is-an-image-name", "inspect {cat} --out {out}.png", "names a .png file"),
    Row("inspect-out-not-permitted", "inspect {cat} --out /sys/fs/deepvis-test-out", "no permission to write"),
    Row("inspect-disk-full", "inspect {cat} --out {out}", "the disk is full", fault="enospc"),
    Row("inspect-undecodable-image", "inspect {text_jpg} --out {out}", "cannot decode image"),
    Row("inspect-int32-tiff", "inspect {int32_tif} --out {out}", "32-bit int32"),
    Row("inspect-missing-image", "inspect {tmp}/nope.png --out {out}", "image file not found"),
    Row("inspect-onnx-model", "inspect {cat} --out {out} --model {onnx}", "inspect needs a PyTorch model"),
    Row("inspect-device-tpu", "inspect {cat} --out {out} --device tpu", "unknown device 'tpu'"),
    Row("inspect-binary-config", "inspect {cat} --out {out} --config {binary_yaml}", "is not a text file"),
    # --- units ------------------------------------------------------------------------------
    Row("units-batch-0", "units --out {out} --channels 0:2 --batch 0 --quiet", "--batch must be 1 or more"),
    Row("units-batch-negative", "units --out {out} --channels 0:2 --batch -1 --quiet", "--batch must be 1 or more"),
    Row("units-channels-past-the-layer", "units --out {out} --layer _blocks.8 --channels 0:5000 --quiet",
        "the layer has 112 channels"),
    Row("units-channel-list-past-the-layer", "units --out {out} --layer _blocks.8 --channels 3,500 --quiet",
        "the layer has 112 channels"),
    Row("units-channels-not-a-slice", "units --out {out} --channels abc --quiet", "is not a slice"),
    Row("units-device-tpu", "units --out {out} --device tpu --quiet", "unknown device 'tpu'"),
]

def _write_int32_tiff(path: Path) -> Path:
    ok = cv2.imwrite(str(path), (np.arange(32 * 32 * 3, dtype=np.int32).reshape(32, 32, 3) * 1000))
    assert ok and cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.int32
    return path


def _tiny_onnx(path: Path) -> Path:
    """A 3-layer classifier with 1000 outputs, exported with the TorchScript exporter (fast)."""
    import warnings

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 8, 3, stride=2),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False,
                          input_names=["image"], output_names=["scores"])
    return path


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory, cat_bgr) -> dict[str, Path]:
    """The shared input files of the table (read-only for the rows)."""
    root = tmp_path_factory.mktemp("bad-inputs")
    small = cv2.resize(cat_bgr, (160, 120))
    cv2.imwrite(str(root / "cat.png"), small)
    cv2.imwrite(str(root / "cat.jpg"), small)
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for i in range(4):
        writer.write(np.roll(small, 8 * i, axis=1))
    writer.release()
    (root / "text.jpg").write_text("this is not a picture\n")
    (root / "file.txt").write_text("an existing file\n")
    (root / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (root / "busy").mkdir()
    (root / "busy" / "thesis.tex").write_text("someone's work\n")
    (root / "bad_folder").mkdir()
    for name in ("a.png", "b.jpg"):
        (root / "bad_folder" / name).write_bytes(b"\x00not an image")
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3)}, root / "other.pth")
    torch.save([1, 2, 3], root / "junk.pth")
    return {
        "cat": root / "cat.png", "cat_jpg": root / "cat.jpg", "clip": root / "clip.mp4", "text_jpg": root / "text.jpg",
        "int32_tif": _write_int32_tiff(root / "int32.tif"), "binary_yaml": root / "binary.yaml",
        "file": root / "file.txt", "busy": root / "busy", "bad_folder": root / "bad_folder",
        "onnx": _tiny_onnx(root / "tiny.onnx"), "weights_other": root / "other.pth", "junk_pth": root / "junk.pth",
        "root": root,
    }


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for folders): what "nothing written" compares."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def _enospc(monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    monkeypatch.setattr(Path, "write_text", full)


def _rofs(monkeypatch):
    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "mkdir", read_only)


class _SilentVideoWriter:
    """Like cv2.VideoWriter on a full disk: opens, accepts every frame, writes nothing, reports nothing."""

    def __init__(self, path, *args):
        Path(path).write_bytes(b"")

    def isOpened(self):
        return True

    def write(self, image):
        pass

    def release(self):
        pass


def _silent_video_writer(monkeypatch):
    import toolbox.video_file

    monkeypatch.setattr(toolbox.video_file.cv2, "VideoWriter", _SilentVideoWriter)


FAULTS = {"enospc": _enospc, "rofs": _rofs, "silent_video_writer": _silent_video_writer}


def run_row(row: Row, inputs: dict[str, Path], tmp: Path, monkeypatch, capsys) -> tuple[int, str]:
    """Run one row's command in-process; -> (exit code, stderr)."""
    argv = [arg.format(out=tmp / "out", tmp=tmp, **{k: v for k, v in inputs.items() if k != "root"})
            for arg in shlex.split(row.command)]
    if row.fault is not None:
        FAULTS[row.fault](monkeypatch)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refusing an argument
        code = exit_.code
    finally:
        monkeypatch.undo()
    return code, capsys.readouterr().err


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_bad_input_is_one_line_and_an_exit_code_and_writes_nothing(row, bad_inputs, tmp_path, monkeypatch, capsys):
    inputs_before = _tree(bad_inputs["root"])
    code, err = run_row(row, bad_inputs, tmp_path, monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == row.code, err
    assert len(lines) == 1 and lines[0].startswith("deepvis: error: "), err
    assert row.fragment in lines[0], lines[0]
    assert _tree(tmp_path) == {}, _tree(tmp_path).keys()
    assert _tree(bad_inputs["root"]) == inputs_before
