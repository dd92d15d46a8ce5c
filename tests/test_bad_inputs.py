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
  {good_folder} a folder with one good photo
  {weights_other} a state dict of another architecture   {junk_pth} a .pth that is no state dict
  {googlenet_bad} googlenet's state dict less one key, plus one foreign key
  {empty_list} a list file (.txt) naming no videos
``fault``: the name of an injected fault (FAULTS) active while the row runs, e.g. a full disk.
"""
from __future__ import annotations

import dataclasses
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
from toolbox.models import load_model


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
    Row("analyze-threads-0", "analyze {cat} --out {out} --threads 0 --quiet", "threads must be 1 or more, not 0"),
    Row("analyze-device-tpu", "analyze {cat} --out {out} --device tpu --quiet", "unknown device 'tpu'"),
    Row("analyze-unknown-model", "analyze {cat} --out {out} --model nosuchnet --quiet", "unknown model 'nosuchnet'"),
    Row("analyze-unknown-layer", "analyze {cat} --out {out} --layer _blocks.99 --quiet", "_blocks.99"),
    Row("analyze-layer-after-pooling", "analyze {cat} --out {out} --layer _fc --quiet",
        "layer '_fc' outputs shape (1000,), not a (C, H, W) feature map: pick a convolutional layer, e.g. '_relu1'"),
    Row("analyze-unknown-saliency", "analyze {cat} --out {out} --saliency nosuch --quiet", "nosuch"),
    Row("analyze-metrics-without-saliency", "analyze {cat} --out {out} --metrics deletion --quiet",
        "--metrics scores a saliency map: add --saliency"),
    Row("analyze-unknown-metric", "analyze {cat} --out {out} --saliency gradcam --metrics nosuch --quiet",
        "unknown metric 'nosuch'"),
    Row("analyze-metrics-every-0", "analyze {cat} --out {out} --saliency gradcam --metrics --metrics-every 0 --quiet",
        "--metrics-every must be 1 or more"),
    Row("inspect-unknown-metric", "inspect {cat} --out {out} --metrics deletion,nosuch", "unknown metric 'nosuch'"),
    Row("inspect-unknown-method", "inspect {cat} --out {out} --methods gradcam,nosuch",
        "unknown saliency method 'nosuch'"),
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
    Row("inspect-cam-after-global-pooling", "inspect {cat} --out {out} --model resnet18 --weights none --layer avgpool "
        "--methods gradcam", "layer 'avgpool' outputs 1x512x1x1"),
    Row("inspect-layer-after-pooling", "inspect {cat} --out {out} --layer _fc --methods gradient",
        "layer '_fc' outputs shape (1000,), not a (C, H, W) feature map: pick a convolutional layer, e.g. '_relu1'"),
    # --- units ------------------------------------------------------------------------------
    Row("units-batch-0", "units --out {out} --channels 0:2 --batch 0 --quiet", "--batch must be 1 or more"),
    Row("units-batch-negative", "units --out {out} --channels 0:2 --batch -1 --quiet", "--batch must be 1 or more"),
    Row("units-channels-past-the-layer", "units --out {out} --layer _blocks.8 --channels 0:5000 --quiet",
        "the layer has 112 channels"),
    Row("units-channel-list-past-the-layer", "units --out {out} --layer _blocks.8 --channels 3,500 --quiet",
        "the layer has 112 channels"),
    Row("units-channels-not-a-slice", "units --out {out} --channels abc --quiet", "is not a slice"),
    Row("units-device-tpu", "units --out {out} --device tpu --quiet", "unknown device 'tpu'"),
    Row("units-out-is-a-file", "units --out {file} --channels 0:2 --quiet", "is a file, not a folder"),
    Row("units-out-below-a-file", "units --out {file}/cache --channels 0:2 --quiet", "is a file, not a folder"),
    Row("units-out-not-permitted", "units --out /sys/fs/deepvis-test-out --channels 0:2 --quiet",
        "no permission to write"),
    Row("units-out-read-only-fs", "units --out {out} --channels 0:2 --quiet", "read-only", fault="rofs_create"),
    Row("units-onnx-model", "units --out {out} --model {onnx} --quiet", "need gradients"),
    # --- invert / texture / style ---------------------------------------------------------------
    Row("style-style-not-an-image", "style {cat} --style {text_jpg} --out {out}.png --quiet", "cannot decode image"),
    Row("texture-style-not-an-image", "texture {text_jpg} --out {out}.png --quiet", "cannot decode image"),
    Row("style-layers-logits", "style {cat} --style {cat} --layers logits --out {out}.png --quiet",
        "no feature map for a Gram matrix"),
    Row("style-layer-after-the-classifier", "style {cat} --style {cat} --layers _blocks.2,_fc --out {out}.png --quiet",
        "not a feature map"),
    Row("style-empty-style-folder", "style {cat} --style {tmp} --out {out}.png --quiet", "no style images in folder"),
    Row("style-style-folder-not-an-image", "style {cat} --style {good_folder} --out {out}.png --quiet",
        "is a folder: name one image of it"),
    Row("style-image-to-video-name", "style {cat} --style {cat} --out {out}.mp4 --quiet", "is a video name, but"),
    Row("style-steps-0", "style {cat} --style {cat} --steps 0 --out {out}.png --quiet", "--steps must be 1 or more"),
    Row("texture-out-not-an-image", "texture {cat} --out {out} --quiet", "is not an image name"),
    Row("invert-out-video-name", "invert {cat} --out {out}.mp4 --quiet", "is a video name"),
    Row("invert-unknown-layer", "invert {cat} --layers nope --out {out}.png --quiet", "unknown layer 'nope'"),
    # --- dream ------------------------------------------------------------------------------
    Row("dream-out-is-the-input", "dream {cat} --out {cat} --quiet", "is the input itself"),
    Row("dream-folder-out-is-the-input", "dream {bad_folder} --out {bad_folder} --quiet", "is the input itself"),
    Row("dream-image-to-video-name", "dream {cat} --out {out}.mp4 --quiet", "is a video name, but"),
    Row("dream-video-to-image-name", "dream {clip} --out {out}.png --quiet", "is an image name, but"),
    Row("dream-folder-to-image-name", "dream {bad_folder} --out {out}.png --quiet", "names a .png file, but"),
    Row("dream-logit-out-of-range", "dream {cat} --out {out}.png --layers logits:1:logit:5000 --quiet",
        "logit 5000 out of range: lite0 has 1000 classes"),
    Row("dream-channel-out-of-range", "dream {cat} --out {out}.png --layers _blocks.8:1:channel:500 --quiet",
        "channel 500 out of range: layer '_blocks.8' has 112 channels"),
    Row("dream-octaves-1000", "dream {cat} --out {out}.png --octaves 1000 --quiet", "receptive field of _blocks.8"),
    Row("dream-octaves-tf-tutorial-too-large", "dream {cat} --out {out}.png --preset tf-tutorial --octaves 40 --quiet",
        "the largest octave would exceed"),
    Row("dream-octaves-0", "dream {cat} --out {out}.png --octaves 0 --quiet", "--octaves must be 1 or more"),
    Row("dream-step-size-negative", "dream {cat} --out {out}.png --step-size -1 --quiet",
        "in grey levels of 255 (e.g. 1.5)"),
    Row("dream-step-size-0", "dream {cat} --out {out}.png --step-size 0 --quiet", "--step-size must be positive"),
    Row("dream-max-side-negative", "dream {cat} --out {out}.png --max-side -5 --quiet", "--max-side must be 0"),
    Row("dream-max-frames-0", "dream {clip} --out {out}.mp4 --max-frames 0 --quiet", "--max-frames must be 1 or more"),
    Row("dream-undecodable-image", "dream {text_jpg} --out {out}.png --quiet", "cannot decode image"),
    Row("dream-int32-tiff", "dream {int32_tif} --out {out}.png --quiet", "32-bit int32"),
    Row("dream-folder-of-bad-images", "dream {bad_folder} --out {out} --layers _blocks.3 --quiet",
        "no readable image"),
    Row("dream-unknown-layer", "dream {cat} --out {out}.png --layers _blocks.99 --quiet", "_blocks.99"),
    Row("dream-layer-index-out-of-range", "dream {cat} --out {out}.png --layers 99 --quiet", "layer index 99"),
    Row("dream-onnx-model", "dream {cat} --out {out}.png --model {onnx} --quiet", "dreaming needs gradients"),
    Row("dream-binary-config", "dream {cat} --out {out}.png --config {binary_yaml} --quiet", "is not a text file"),
    Row("dream-disk-full", "dream {cat} --out {out}.png --layers _blocks.3 --octaves 1 --steps 1 --quiet",
        "the disk is full", fault="enospc"),
    Row("dream-disk-full-in-a-new-folder",
        "dream {cat} --out {out}/deeper/x.png --layers _blocks.3 --octaves 1 --steps 1 --quiet", "the disk is full",
        fault="enospc"),
    Row("dream-video-writer-fails-silently",
        "dream {clip} --out {out}.mp4 --layers _blocks.3 --octaves 1 --steps 1 --max-frames 2 --quiet",
        "cannot write video", fault="silent_video_writer"),
    Row("dream-out-below-a-file", "dream {cat} --out {file}/x.png --layers _blocks.3 --octaves 1 --steps 1 --quiet",
        "is a file, not a folder"),
    Row("dream-out-not-permitted", "dream {cat} --out /sys/fs/deepvis-test.png --quiet", "no permission to write"),
    Row("dream-out-read-only-fs", "dream {cat} --out {out}/x.png --layers _blocks.3 --octaves 1 --steps 1 --quiet",
        "read-only", fault="rofs"),
    Row("dream-folder-out-holds-other-files", "dream {good_folder} --out {busy} --quiet",
        "already holds files deepvis did not write"),
    Row("dream-empty-folder", "dream {tmp} --out {out} --quiet", "no images in folder"),
    Row("dream-tile-too-small", "dream {cat} --out {out}.png --tile 5 --quiet", "--tile must be at least 16"),
    Row("dream-scale-below-1", "dream {cat} --out {out}.png --scale 0.5 --quiet", "--scale must be above 1"),
    Row("dream-steps-negative", "dream {cat} --out {out}.png --steps -1 --quiet", "--steps must be 0 or more"),
    Row("dream-layers-bad-weight", "dream {cat} --out {out}.png --layers _blocks.8:x --quiet",
        "use name[:weight[:kind[:index]]]"),
    Row("dream-layers-unknown-objective", "dream {cat} --out {out}.png --layers _blocks.8:1:foo --quiet",
        "dream objective 'foo' unknown"),
    Row("dream-channel-without-index", "dream {cat} --out {out}.png --layers _blocks.8:1:channel --quiet",
        "needs a channel/class index"),
    # --- live (checked before the window opens) ---------------------------------------------
    Row("live-out-is-a-file", "live {cat} --out {file}", "is a file, not a folder"),
    Row("live-out-not-permitted", "live {cat} --out /sys/fs/deepvis-test-out", "no permission to write"),
    Row("live-out-read-only-fs", "live {cat} --out {out}", "read-only", fault="rofs_create"),
    Row("live-undecodable-image", "live {text_jpg} --out {out}", "cannot decode image"),
    Row("live-int32-tiff", "live {int32_tif} --out {out}", "32-bit int32"),
    Row("live-folder-of-bad-images", "live {bad_folder} --out {out}", "no readable image"),
    Row("analyze-empty-folder", "analyze {tmp} --out {out} --quiet", "no images found"),
    Row("analyze-glob-matches-nothing", "analyze '{tmp}/archive/*.mp4' --out {out} --quiet", "matches no files"),
    Row("analyze-list-names-nothing", "analyze {empty_list} --out {out} --quiet", "names no sources"),
    Row("analyze-ray-unreachable", "analyze {clip} --out {out} --ray 127.0.0.1:1 --quiet",
        "cannot reach a Ray cluster at 127.0.0.1:1"),
    Row("analyze-workers-0", "analyze {clip} --out {out} --ray --workers 0 --quiet", "--workers must be 1 or more"),
    Row("analyze-segment-seconds-0", "analyze {clip} --out {out} --segment-seconds 0 --quiet",
        "--segment-seconds 0.0 must be more than 0"),
    Row("report-folder-without-analysis", "report {tmp}", "holds no complete analysis"),
    Row("analyze-no-such-camera", "analyze 7 --out {out} --quiet", "no camera at index 7"),
    Row("analyze-weights-is-a-folder", "analyze {cat} --out {out} --weights {tmp} --quiet", "weights file not found"),
    Row("units-size-0", "units --out {out} --channels 0:1 --size 0 --quiet", "unit image size must be >= 8"),
    Row("units-steps-negative", "units --out {out} --channels 0:1 --steps -1 --quiet", "steps >= 0"),
    Row("units-unknown-layer", "units --out {out} --layer 99 --quiet", "unknown layer '99'"),
    # --- models -----------------------------------------------------------------------------
    Row("layers-googlenet-wrong-state-dict", "layers --model googlenet --weights {googlenet_bad}",
        "do not fit model googlenet: 1 missing keys (conv1.conv.weight); 1 unexpected keys (extra.weight)"),
    Row("layers-inception-resnet-weights", "layers --model inception_v3 --weights {weights_other}",
        "do not fit model inception_v3"),
    Row("layers-device-tpu", "layers --device tpu", "unknown device 'tpu'"),
    Row("layers-threads-negative", "layers --threads -2", "threads must be 1 or more, not -2"),
    Row("dream-threads-0", "dream {cat} --out {out}.png --threads 0 --quiet", "threads must be 1 or more, not 0"),
    Row("live-threads-0", "live {cat} --out {out} --threads 0", "threads must be 1 or more, not 0"),
    Row("layers-binary-config", "layers --config {binary_yaml}", "is not a text file"),
    Row("layers-missing-onnx-file", "layers --model {tmp}/nope.onnx", "ONNX file not found"),
    Row("layers-weights-of-another-model", "layers --model resnet18 --weights {googlenet_bad}", "do not fit model resnet18"),
    # --- latent space: index, neighbours, map, tcav -------------------------------------------
    Row("index-every-0", "index {cat} --out {out} --every 0 --quiet", "--every must be 1 or more, not 0"),
    Row("index-max-frames-0", "index {cat} --out {out} --max-frames 0 --quiet", "--max-frames must be 1 or more"),
    Row("index-out-holds-other-files", "index {cat} --out {busy} --quiet", "already holds files that are not a deepvis index"),
    Row("index-of-other-weights", "index {cat} --out {other_index} --quiet",
        "was built with model lite0 (weights 0123456789abcdef), layer _relu1"),
    Row("index-unknown-layer", "index {cat} --out {out} --layer _blocks.99 --quiet", "unknown layer '_blocks.99'"),
    Row("index-missing-source", "index {tmp}/nope.mp4 --out {out} --quiet", "no such file or folder"),
    Row("neighbours-empty-index", "neighbours {cat} --index {empty_index} --out {out}", "is empty"),
    Row("neighbours-missing-index", "neighbours {cat} --index {tmp}/none --out {out}", "no index at"),
    Row("neighbours-k-0", "neighbours {cat} --index {other_index} --out {out} -k 0", "-k must be 1 or more, not 0"),
    Row("neighbours-index-of-other-weights", "neighbours {cat} --index {other_index} --out {out}",
        "was built with model lite0 (weights 0123456789abcdef)"),
    Row("neighbours-item-out-of-range", "neighbours #7 --index {other_index} --out {out}", "the index has items #0..#0"),
    Row("neighbours-out-holds-other-files", "neighbours {cat} --index {other_index} --out {busy}",
        "already holds files deepvis did not write"),
    Row("map-empty-index", "map {empty_index} --out {out}.png", "is empty"),
    Row("map-out-not-an-image", "map {other_index} --out {out}.txt", "ending in .png or .jpg"),
    Row("map-grid-1", "map {other_index} --out {out}.png --grid 1", "--grid 1"),
    Row("tcav-too-few-concept-images", "tcav --concept few={few_images} --random {random_images} --class zebra "
        "--layers _blocks.8 --out {out}", "holds 3 images; a CAV needs at least 10"),
    Row("tcav-concept-is-the-random-folder", "tcav --concept crops={random_images} --random {random_images} "
        "--class zebra --layers _blocks.8 --out {out}", "is also the --random folder"),
    Row("tcav-unknown-class", "tcav --concept striped={concept_images} --random {random_images} --class zebr "
        "--layers _blocks.8 --out {out}", "did you mean 'zebra'"),
    Row("tcav-too-few-random-runs", "tcav --concept striped={concept_images} --random {random_images} --class zebra "
        "--layers _blocks.8 --random-runs 5 --out {out}", "at least 10 random runs"),
    Row("tcav-concept-without-name", "tcav --concept {concept_images} --random {random_images} --class zebra "
        "--layers _blocks.8 --out {out}", "write NAME=FOLDER"),
    Row("tcav-random-sets-too-small", "tcav --concept striped={concept_images} --random {random_images} --class zebra "
        "--layers _blocks.8 --set-size 4 --out {out}", "at least 10 pictures per random set"),
    Row("tcav-unknown-layer", "tcav --concept striped={concept_images} --random {random_images} --class zebra "
        "--layers _blocks.99 --out {out}", "unknown layer '_blocks.99'"),
    # --- the command line itself (argparse): the problem, then where the options are listed ---
    Row("live-unknown-option", "live demo --preset nonsense",
        "unrecognized arguments: --preset nonsense; see 'deepvis live --help'"),
    Row("models-extra-argument", "models lite0", "unrecognized arguments: lite0; see 'deepvis models --help'"),
    Row("dream-preset-bad-choice", "dream {cat} --out {out}.png --preset nonsense",
        "argument --preset: invalid choice: 'nonsense' (choose from 'classic', 'tf-tutorial'); "
        "see 'deepvis dream --help'"),
    Row("units-preset-bad-choice", "units --out {out} --preset nonsense", "invalid choice: 'nonsense'"),
    Row("analyze-backend-bad-choice", "analyze {cat} --out {out} --backend tpu", "argument --backend: invalid choice"),
    Row("map-method-bad-choice", "map {other_index} --out {out}.png --method lda", "argument --method: invalid choice"),
    Row("analyze-out-missing", "analyze {cat}", "the following arguments are required: --out; "
        "see 'deepvis analyze --help'"),
    Row("analyze-every-not-a-number", "analyze {cat} --out {out} --every two", "argument --every: invalid int value"),
    Row("unknown-command", "analyse {cat} --out {out}", "argument COMMAND: invalid choice: 'analyse'"),
    Row("no-command", "", "the following arguments are required: COMMAND; see 'deepvis --help'"),
]


def _latent_inputs(root: Path, image: np.ndarray) -> dict[str, Path]:
    """An index with no items, one recorded with other weights (one item), and concept folders."""
    from toolbox.jobs.index import recipe_for
    from toolbox.jobs.index_store import IndexStore
    from toolbox.models import load_model as load

    recipe = recipe_for(load("lite0"), "_relu1", "mean")
    empty = IndexStore(root / "empty_index")
    empty.start(recipe)
    empty.append(np.zeros((0, 0), np.float32), np.zeros((0, 64, 64, 3), np.uint8), [], {})
    other = IndexStore(root / "other_index")
    other.start(dataclasses.replace(recipe, weights_id="0123456789abcdef", weights=""))
    item = {"source": "x", "frame": 0, "time": 0.0, "class": "y", "class_index": 0, "probability": 1.0}
    other.append(np.ones((1, 1280), np.float32), np.zeros((1, 64, 64, 3), np.uint8), [item], {})
    folders = {"few_images": 3, "concept_images": 10, "random_images": 12}
    for name, count in folders.items():
        (root / name).mkdir()
        for i in range(count):
            cv2.imwrite(str(root / name / f"{i:02d}.png"), np.roll(image, 7 * i, axis=1))
    return {"empty_index": root / "empty_index", "other_index": root / "other_index",
            **{name: root / name for name in folders}}

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
    (root / "empty_list.txt").write_text("# a list of videos to analyse, with none in it\n")
    (root / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (root / "busy").mkdir()
    (root / "busy" / "thesis.tex").write_text("someone's work\n")
    (root / "good_folder").mkdir()
    cv2.imwrite(str(root / "good_folder" / "cat.png"), small)
    (root / "bad_folder").mkdir()
    for name in ("a.png", "b.jpg"):
        (root / "bad_folder" / name).write_bytes(b"\x00not an image")
    torch.save({"conv.weight": torch.zeros(2, 3, 3, 3)}, root / "other.pth")
    googlenet = load_model("googlenet", weights="none").module.state_dict()
    googlenet.pop("conv1.conv.weight")
    torch.save({**googlenet, "extra.weight": torch.zeros(1)}, root / "googlenet-bad.pth")
    torch.save([1, 2, 3], root / "junk.pth")
    return {
        "empty_list": root / "empty_list.txt",
        "cat": root / "cat.png", "cat_jpg": root / "cat.jpg", "clip": root / "clip.mp4", "text_jpg": root / "text.jpg",
        "int32_tif": _write_int32_tiff(root / "int32.tif"), "binary_yaml": root / "binary.yaml",
        "file": root / "file.txt", "busy": root / "busy", "bad_folder": root / "bad_folder",
        "onnx": _tiny_onnx(root / "tiny.onnx"), "weights_other": root / "other.pth", "junk_pth": root / "junk.pth",
        "googlenet_bad": root / "googlenet-bad.pth", "good_folder": root / "good_folder",
        **_latent_inputs(root, small), "root": root,
    }


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for folders): what "nothing written" compares."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def _enospc(monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    monkeypatch.setattr(Path, "write_text", full)


def _read_only(path, *args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


def _rofs(monkeypatch):
    """A read-only filesystem as a job meets it: no folder can be made."""
    monkeypatch.setattr(os, "mkdir", _read_only)


def _rofs_create(monkeypatch):
    """A read-only filesystem as a writability probe meets it: no file can be created."""
    import toolbox.atomic

    monkeypatch.setattr(os, "mkdir", _read_only)
    monkeypatch.setattr(toolbox.atomic, "create_exclusive", _read_only)


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


FAULTS = {"enospc": _enospc, "rofs": _rofs, "rofs_create": _rofs_create, "silent_video_writer": _silent_video_writer}


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


# --- inputs that must be accepted (each was refused or broke before) ----------------------------------
@pytest.mark.parametrize("argv,heading", [(["--help"], "usage: deepvis [-h]"),
                                          (["dream", "--help"], "usage: deepvis dream [-h]")])
def test_help_prints_the_usage_and_every_option_and_exits_0(argv, heading, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0 and err == ""
    assert out.startswith(heading) and "options:" in out and "-h, --help" in out
    assert ("--preset {classic,tf-tutorial}" in out) == (argv[0] == "dream")


def test_a_yaml_layer_given_as_a_number_is_accepted_like_the_command_line(tmp_path, lite0):
    from toolbox.config import load_config
    from toolbox.jobs.common import chosen_layer

    config_file = tmp_path / "layer.yaml"
    config_file.write_text("model:\n  layer: 5\n")
    config = load_config(config_file)
    assert config.model.layer == "5"
    assert chosen_layer(lite0, config.model.layer) == chosen_layer(lite0, "5") == lite0.layers[5]


def test_a_saliency_method_option_named_like_a_parameter_reaches_the_method(lite0, cat_bgr):
    from toolbox.analysis.saliency import saliency_map

    x = lite0.input_tensor(lite0.preprocess.model_view(cat_bgr))
    trapezoid = saliency_map(lite0, x, "integrated_gradients", 285, method="riemann_trapezoid", steps=3)
    legendre = saliency_map(lite0, x, "integrated_gradients", 285, steps=3)
    assert trapezoid.shape == legendre.shape == x.shape[1:]
    assert not torch.allclose(trapezoid, legendre)  # the option was used, not dropped


@pytest.mark.parametrize("name,aux", [("googlenet", ("aux1.", "aux2.")), ("inception_v3", ("AuxLogits.",))])
def test_weights_with_or_without_aux_heads_load_and_are_used(name, aux, tmp_path):
    import torchvision

    full = torchvision.models.get_model(name, weights=None, aux_logits=True, init_weights=False)
    with torch.no_grad():
        for p in full.parameters():
            p.normal_(0, 0.01)
    state = full.state_dict()
    torch.save(state, tmp_path / "full.pth")
    torch.save({k: v for k, v in state.items() if not k.startswith(aux)}, tmp_path / "plain.pth")
    for file in ("full.pth", "plain.pth"):
        model = load_model(name, weights=str(tmp_path / file))
        loaded = model.module.state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in loaded)  # every weight is the file's, none random
