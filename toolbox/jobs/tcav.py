"""deepvis tcav: CAVs of concept folders at some layers, TCAV scores for a class with the paper's
significance test, a chart, a JSON, and the CAVs saved for reuse (live --cav, later runs)."""
from __future__ import annotations

import difflib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from toolbox.cache import cache_root
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import model_from_config
from toolbox.models.registry import LoadedModel
from toolbox.output_set import OutputSet, check_output_folder
from toolbox.sources import open_source, read_image
from toolbox.sources.images import IMAGE_SUFFIXES

MIN_IMAGES = 10  # per concept: fewer cannot train and test a linear classifier meaningfully
CAV_FILE, CAV_META = "cavs.npz", "cavs.json"


@dataclass(frozen=True)
class TcavOptions:
    concepts: list[str]  # "NAME=DIR"
    random: str  # folder of random pictures, or of subfolders (one random set each)
    target: str  # class name or index
    layers: str  # "L1,L2"
    random_runs: int = 10
    inputs: str = "demo"  # the pictures whose class logit is tested: a source spec
    max_inputs: int = 40
    seed: int = 0
    set_size: int | None = None  # pictures per random set (default: the largest concept's count)
    size: int | None = None  # picture side fed to the model (default: the model's input size)


@dataclass(frozen=True)
class TcavOutputs:
    chart: Path
    json: Path
    cavs: Path
    report: dict


def require_latent_extra() -> None:
    """TCAV needs captum and matplotlib (the ``latent`` extra): say how to install them."""
    import importlib.util

    from toolbox.analysis.latent.maps import EXTRA

    missing = [name for name in ("captum", "matplotlib") if importlib.util.find_spec(name) is None]
    if missing:
        raise DeepvisError(f"deepvis tcav needs {' and '.join(missing)}: {EXTRA}")


def resolve_class(categories: tuple[str, ...], name: str) -> int:
    """A class index from its name (any case) or number; an unknown name suggests close ones."""
    text = str(name).strip()
    if text.isdigit() and int(text) < len(categories):
        return int(text)
    lowered = [c.lower() for c in categories]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    close = difflib.get_close_matches(text.lower(), lowered, n=4, cutoff=0.6)
    close += [c for c in lowered if text.lower() in c and c not in close][: 4 - len(close)]
    hint = f"did you mean {', '.join(repr(categories[lowered.index(c)]) for c in close)}?" if close else \
        "give a class name or index from the model's classes"
    raise DeepvisError(f"--class '{name}' is not a class of this model: {hint}")


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def folder_fingerprint(files: list[Path]) -> str:
    """Short hash of the files' names, sizes and times: captum's CAV cache key changes with the pictures."""
    digest = hashlib.sha256()
    for f in files:
        stat = f.stat()
        digest.update(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:10]


def parse_concepts(specs: list[str], random_dir: Path) -> list[tuple[str, list[Path]]]:
    """[(name, image files)] for "NAME=DIR" specs, each checked."""
    concepts = []
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise DeepvisError(f"--concept '{spec}': write NAME=FOLDER, e.g. striped=concepts/striped")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise DeepvisError(f"--concept {name}: folder {path} does not exist")
        if path.resolve() == random_dir.resolve():
            raise DeepvisError(f"--concept {name}: {path} is also the --random folder; a concept must differ "
                               "from its random counterexamples: give another folder")
        files = image_files(path)
        if len(files) < MIN_IMAGES:
            raise DeepvisError(f"--concept {name}: {path} holds {len(files)} images; a CAV needs at least "
                               f"{MIN_IMAGES}: add images")
        if name in (n for n, _ in concepts):
            raise DeepvisError(f"--concept {name} is given twice: give each concept once")
        concepts.append((name.strip(), files))
    return concepts


def random_sets(random_dir: Path, runs: int, set_size: int, seed: int) -> list[tuple[str, list[Path]]]:
    """runs + 1 random sets: the folder's subfolders if it has enough, else seeded samples of its images."""
    subfolders = sorted(p for p in random_dir.iterdir() if p.is_dir() and len(image_files(p)) >= MIN_IMAGES)
    if len(subfolders) >= runs + 1:
        return [(f"random-{p.name}", image_files(p)) for p in subfolders[: runs + 1]]
    pool = image_files(random_dir)
    if len(pool) < MIN_IMAGES:
        raise DeepvisError(f"--random {random_dir} holds {len(pool)} images; give at least {MIN_IMAGES} "
                           "(scripts/make_concepts.py makes a set from the demo clips)")
    rng = np.random.default_rng(seed)
    size = min(set_size, len(pool))
    return [(f"random{i}", [pool[j] for j in sorted(rng.choice(len(pool), size, replace=False))])
            for i in range(runs + 1)]


def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, S, S) model inputs at ``size`` pixels a side (antialiased when smaller)."""
    if size == x.shape[-1]:
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def picture_tensor(model: LoadedModel, files: list[Path], size: int) -> torch.Tensor:
    return resized(model.input_tensor([model.preprocess.model_view(read_image(f)) for f in files]), size)


def input_tensor(model: LoadedModel, spec: str, count: int, size: int) -> torch.Tensor:
    """Up to ``count`` pictures of a source, evenly spread over it, as model inputs."""
    if count < 1:
        raise DeepvisError(f"--max-inputs must be 1 or more, not {count}")
    source = open_source(spec)
    views = []
    try:
        total = source.frame_count
        if total and source.seekable:
            for index in np.linspace(0, total - 1, min(count, total)).round().astype(int):
                source.seek(int(index))
                frame = source.read()
                if frame is not None:
                    views.append(model.preprocess.model_view(frame.image))
        else:
            for frame in source:
                views.append(model.preprocess.model_view(frame.image))
                if len(views) >= count:
                    break
    finally:
        source.close()
    if not views:
        raise DeepvisError(f"--inputs {spec}: no picture could be read")
    return resized(model.input_tensor(views), size)


def run_tcav(options: TcavOptions, out: str | Path, config: Config, progress: bool = True) -> TcavOutputs:
    """Check every input, compute the CAVs and scores (captum), write tcav.png, tcav.json, cavs.npz/json."""
    from toolbox.analysis.latent.concepts import (MIN_RANDOM_RUNS, SIGNIFICANCE, ConceptImages, tcav_scores)

    check_output_folder(out)
    require_latent_extra()
    if options.random_runs < MIN_RANDOM_RUNS:
        raise DeepvisError(f"--random-runs {options.random_runs}: the significance test needs at least "
                           f"{MIN_RANDOM_RUNS} random runs")
    random_dir = Path(options.random).expanduser()
    if not random_dir.is_dir():
        raise DeepvisError(f"--random {random_dir}: no such folder")
    concept_files = parse_concepts(options.concepts, random_dir)
    model = model_from_config(config)
    if model.module is None:
        raise DeepvisError("TCAV needs gradients, which an ONNX graph does not give: use a PyTorch model")
    target = resolve_class(model.categories, options.target)
    layers = [name.strip() for name in options.layers.split(",") if name.strip()]
    if not layers:
        raise DeepvisError("--layers: give at least one layer name (deepvis layers)")
    for layer in layers:
        model.check_layer(layer)
    size = options.size or model.preprocess.size
    set_size = options.set_size or max(len(files) for _, files in concept_files)
    if size < 32 or set_size < MIN_IMAGES:
        raise DeepvisError(f"--size {size} / --set-size {set_size}: give a size of at least 32 pixels and at least "
                           f"{MIN_IMAGES} pictures per random set")
    randoms_files = random_sets(random_dir, options.random_runs, set_size, options.seed)
    if progress:
        print(f"tcav: {len(concept_files)} concept(s) x {options.random_runs} random runs x {len(layers)} layer(s)")
    concepts = [ConceptImages(f"{name}-{folder_fingerprint(files)}", picture_tensor(model, files, size))
                for name, files in concept_files]
    randoms = [ConceptImages(f"{name}-{folder_fingerprint(files)}", picture_tensor(model, files, size))
               for name, files in randoms_files]
    inputs = input_tensor(model, options.inputs, options.max_inputs, size)
    model_id = f"{model.name}-{model.weights_id}-{size}px-seed{options.seed}"
    save_path = cache_root() / "tcav"
    result = tcav_scores(model.module, layers, concepts, randoms, inputs, target, str(save_path) + "/", model_id,
                         seed=options.seed)
    names = {c.name: n for c, (n, _) in zip(concepts, concept_files)}
    report = {
        "class": model.categories[target], "class_index": target, "model": model.name,
        "weights_id": model.weights_id, "layers": layers, "inputs": options.inputs, "input_count": len(inputs),
        "size": size, "random_runs": options.random_runs, "seed": options.seed, "alpha": SIGNIFICANCE,
        "test": "two-sided Welch t-test of the concept's scores against random-vs-random scores",
        "random_baseline": {layer: {"scores": result.baseline[layer], "mean": float(np.mean(result.baseline[layer])),
                                    "std": float(np.std(result.baseline[layer]))} for layer in layers},
        "concepts": {names[key]: {layer: {"scores": result.scores[key][layer],
                                          "mean": float(np.mean(result.scores[key][layer])),
                                          "std": float(np.std(result.scores[key][layer])),
                                          "p_value": result.p_values[key][layer],
                                          "significant": result.significant(key, layer)}
                                  for layer in layers} for key in result.scores},
    }
    from toolbox.render.concept_chart import tcav_chart

    chart = tcav_chart({names[k]: v for k, v in result.scores.items()}, result.baseline,
                       {names[k]: result.p_values[k] for k in result.scores},
                       f"TCAV: concepts for class '{model.categories[target]}' ({model.name}, "
                       f"{len(inputs)} inputs, {options.random_runs} random runs)", alpha=SIGNIFICANCE)
    from toolbox.models.layers import layer_table

    probe = torch.zeros(1, 3, size, size, device=model.device)
    shapes = {info.name: list(info.shape) for info in layer_table(model.module, probe, layers)}
    cav_meta = {"model": model.name, "weights_id": model.weights_id, "class": model.categories[target],
                "class_index": target, "layers": layers, "shapes": shapes, "size": size,
                "concepts": list(names.values()),
                "note": "one unit CAV per concept and layer: the mean of the runs' CAVs, normalised"}
    arrays = {}
    for key, per_layer in result.cavs.items():
        for layer, runs in per_layer.items():
            mean = runs.mean(0)
            arrays[f"{names[key]}|{layer}"] = (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with OutputSet(out, job="tcav") as outputs:
        json_path = outputs.write_json("tcav.json", report)
        chart_path = outputs.write_image("tcav.png", chart)
        outputs.write_bytes(CAV_FILE, buffer.getvalue())
        outputs.write_json(CAV_META, cav_meta)
    return TcavOutputs(chart_path, json_path, Path(out), report)
