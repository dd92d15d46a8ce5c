"""TCAV: scores equal captum run directly with the same seeds and a written-out directional-derivative
count; a concept the model uses by construction is significant, random crops are not; on lite0,
striped textures are significant for 'zebra' (after a logit test shows lite0 uses stripes for it)."""
from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from toolbox.analysis.latent.concepts import (ConceptImages, captum_concepts, experimental_sets, layer_gradient,
                                              sign_count_scores, tcav_scores)

ROOT = Path(__file__).resolve().parents[1]
SIDE = 32


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class EdgeNet(nn.Module):
    """A fixed-weight classifier whose class 0 ("zebra") is edge energy by construction:
    features = ReLU(±Sobel x, ±Sobel y) of the grey image (4, H, W); logit 0 = mean(features²),
    logit 1 = mean brightness (no edges involved)."""

    def __init__(self):
        super().__init__()
        gx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
        conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        conv.weight.data = torch.stack([gx, -gx, gx.T, -gx.T])[:, None] / 4
        self.grey = nn.Conv2d(3, 1, 1, bias=False)
        self.grey.weight.data.fill_(1 / 3)
        self.features = nn.Sequential(conv, nn.ReLU())
        self.requires_grad_(False)

    def forward(self, x):
        f = self.features(self.grey(x))
        return torch.stack([(f ** 2).mean((1, 2, 3)), x.mean((1, 2, 3))], 1)


def as_inputs(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 BGR pictures -> (N, 3, SIDE, SIDE) in [0, 1]."""
    small = [cv2.resize(im, (SIDE, SIDE), interpolation=cv2.INTER_AREA) for im in images]
    return torch.from_numpy(np.stack(small)[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def pictures():
    """Striped textures, random demo-clip crops (11 sets of 10), other crops as a concept, inputs."""
    concepts = load_script("make_concepts")
    rng = np.random.default_rng(0)
    striped = as_inputs([concepts.striped(96, rng) for _ in range(12)])
    crops = as_inputs(concepts.clip_crops(12 + 11 * 10 + 8, 96, rng))
    return {"striped": striped, "crops": crops[:12], "inputs": crops[12:20],
            "randoms": [crops[20 + 10 * i : 30 + 10 * i] for i in range(11)]}


@pytest.fixture(scope="module")
def edge_tcav(pictures, tmp_path_factory):
    model = EdgeNet().eval()
    randoms = [ConceptImages(f"random{i}", x) for i, x in enumerate(pictures["randoms"])]
    concepts = [ConceptImages("striped", pictures["striped"]), ConceptImages("crops", pictures["crops"])]
    save = str(tmp_path_factory.mktemp("cav")) + "/"
    result = tcav_scores(model, ["features"], concepts, randoms, pictures["inputs"], target=0, save_path=save,
                         model_id="edgenet", seed=7)
    return model, concepts, randoms, result


def test_a_concept_the_model_uses_by_construction_is_significant_and_random_crops_are_not(edge_tcav):
    _, _, _, result = edge_tcav
    assert len(result.scores["striped"]["features"]) == 10 and len(result.baseline["features"]) == 10
    assert np.mean(result.scores["striped"]["features"]) > 0.9
    assert result.significant("striped", "features")
    assert not result.significant("crops", "features"), result.p_values["crops"]


def test_scores_equal_captum_run_directly_with_the_same_seed(edge_tcav, pictures, tmp_path):
    from captum.concept import TCAV

    model, concepts, randoms, result = edge_tcav
    sets = captum_concepts([*concepts, *randoms])
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    tcav = TCAV(model, ["features"], model_id="edgenet", save_path=str(tmp_path) + "/")
    raw = tcav.interpret(pictures["inputs"], experimental_sets(sets[:2], sets[2:]), target=0)
    direct = {c.name: [float(raw[f"{i}-{r}"]["features"]["sign_count"][0]) for r in range(3, 13)]
              for i, c in enumerate(concepts)}
    assert direct == {name: result.scores[name]["features"] for name in direct}
    assert [float(raw[f"{r - 1}-{r}"]["features"]["sign_count"][0]) for r in range(3, 13)] == result.baseline["features"]


def test_scores_equal_the_written_out_directional_derivative_count(edge_tcav, pictures):
    model, _, _, result = edge_tcav
    _, gradients = layer_gradient(model, pictures["inputs"], "features", 0)
    for name in ("striped", "crops"):
        cavs = torch.from_numpy(result.cavs[name]["features"])
        np.testing.assert_allclose(sign_count_scores(gradients, cavs).numpy(), result.scores[name]["features"])


def test_layer_gradient_leaves_the_model_as_it_was(pictures):
    model = EdgeNet()
    before = model(pictures["inputs"])
    act, grad = layer_gradient(model, pictures["inputs"], "features", 0)
    features = model.features(model.grey(pictures["inputs"])).flatten(1)
    np.testing.assert_allclose(act, features, rtol=1e-6)
    np.testing.assert_allclose(grad, 2 * features / features.shape[1], rtol=1e-5, atol=1e-9)  # d mean(f²)/df
    assert torch.equal(model(pictures["inputs"]), before) and not any(m._forward_hooks for m in model.modules())


@pytest.mark.slow  # lite0 forwards of ~150 pictures (20-150 s on a busy 2-core machine)
def test_lite0_uses_stripes_for_zebra_and_tcav_finds_it_significant(lite0, tmp_path):
    from toolbox.config import load_config
    from toolbox.jobs.tcav import TcavOptions, run_tcav

    make = load_script("make_concepts")
    make.make_concepts(tmp_path / "c", count=10, random_count=60, seed=0)
    crops = tmp_path / "crops"
    crops.mkdir()
    for i, crop in enumerate(make.clip_crops(10, 224, np.random.default_rng(99))):
        cv2.imwrite(str(crops / f"crop_{i}.png"), crop)
    # the logit test first: stripes raise lite0's zebra logit far above what random crops do
    zebra = lite0.categories.index("zebra")
    views = lambda folder: lite0.input_tensor([lite0.preprocess.model_view(cv2.imread(str(f)))  # noqa: E731
                                               for f in sorted(folder.glob("*.png"))])
    with torch.inference_mode():
        striped_rank = (lite0.module(views(tmp_path / "c" / "striped")).argsort(1, descending=True) == zebra)
        crop_rank = (lite0.module(views(crops)).argsort(1, descending=True) == zebra)
    assert striped_rank.float().argmax(1).median() < 50 < crop_rank.float().argmax(1).median()
    options = TcavOptions([f"striped={tmp_path / 'c' / 'striped'}", f"crops={crops}"], str(tmp_path / "c" / "random"),
                          "zebra", "_blocks.12", max_inputs=10, size=160)
    out = run_tcav(options, tmp_path / "out", load_config(), progress=False)
    report = json.loads(out.json.read_text())
    assert report["concepts"]["striped"]["_blocks.12"]["significant"]
    assert report["concepts"]["striped"]["_blocks.12"]["mean"] > report["random_baseline"]["_blocks.12"]["mean"]
    assert not report["concepts"]["crops"]["_blocks.12"]["significant"]
    cavs = np.load(tmp_path / "out" / "cavs.npz")
    assert set(cavs.files) == {"striped|_blocks.12", "crops|_blocks.12"}
    from toolbox.models.layers import layer_table

    (info,) = layer_table(lite0.module, torch.zeros(1, 3, 160, 160), ["_blocks.12"])  # (192, 5, 5) at 160 px
    assert cavs["striped|_blocks.12"].shape == (int(np.prod(info.shape)),)
    assert json.loads((tmp_path / "out" / "cavs.json").read_text())["shapes"]["_blocks.12"] == list(info.shape)
    assert cv2.imread(str(out.chart)).shape == (540, 960, 3)


def test_tcav_chart_marks_each_bar_just_above_its_error_bar():
    """In the bar's middle column the error bar runs up from the bar to its cap; the mark (* and
    its p-value) starts a few pixels above the cap: never on it, never floating far above."""
    from toolbox.render.atlas import PALETTE
    from toolbox.render.concept_chart import tcav_chart

    high, low = [0.7, 1.0] * 5, [0.2, 0.4] * 5  # 0.85 +- 0.15 (cap at 1.0), 0.3 +- 0.1
    chart = tcav_chart({"a": {"L": high}, "b": {"L": low}}, {"L": [0.5] * 10}, {"a": {"L": 0.001}, "b": {"L": 0.5}},
                       "chart")
    dark = chart.max(axis=2) < 100
    for colour in (PALETTE[0], PALETTE[1]):
        inside = np.all(chart == colour, axis=2)
        columns = np.flatnonzero(inside.sum(0) > 60)  # the bar, not its legend patch
        middle = int(columns.mean())
        bar_top = np.flatnonzero(inside[:, middle]).min()
        cap = bar_top - 1
        while dark[cap - 1, middle]:  # up the error bar's line to its cap
            cap -= 1
        assert bar_top - cap > 20  # the error bar was found
        mark_rows = np.flatnonzero(dark[:cap - 1, middle - 25:middle + 26].any(axis=1))
        assert 3 <= cap - mark_rows.max() <= 15, (cap, mark_rows.max())


def test_tcav_chart_draws_bars_at_the_scores_heights():
    from toolbox.render.atlas import PALETTE
    from toolbox.render.concept_chart import tcav_chart

    chart = tcav_chart({"a": {"L": [0.8] * 10}, "b": {"L": [0.4] * 10}}, {"L": [0.2] * 10},
                       {"a": {"L": 0.001}, "b": {"L": 0.5}}, "chart")
    heights = {}
    for name, colour in (("a", PALETTE[0]), ("b", PALETTE[1]), ("random", (153, 153, 153))):
        rows = np.flatnonzero(np.all(chart == colour, axis=2).sum(1) > 60)  # rows crossing the bar, not the legend
        heights[name] = rows.max() - rows.min() + 1
    assert heights["a"] / heights["b"] == pytest.approx(2.0, rel=0.03)
    assert heights["random"] / heights["b"] == pytest.approx(0.5, rel=0.05)
