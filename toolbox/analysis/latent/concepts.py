"""Concept activation vectors and TCAV (Kim et al. 2018) through captum.concept.

A CAV is the normal of a linear classifier separating a layer's activations of concept pictures from
those of random pictures. The TCAV score of a concept for a class is the fraction of input pictures
whose class logit grows when their activation moves along the CAV (a positive directional derivative).
As in the paper, a concept is *significant* when its scores over several random counterexample sets
differ from the scores of random-vs-random CAVs in a two-sided t-test (p < 0.05).

    sets = ConceptSets([Concept("striped", striped_images)], randoms=[...11 sets...])
    result = tcav_scores(model.module, ["_blocks.10"], sets, inputs, target=340, save_path=..., seed=0)
    result.scores["striped"]["_blocks.10"]  # one score per random run
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from toolbox.models.capture import register_own_forward_hook

SIGNIFICANCE = 0.05  # two-sided p-value below which a concept counts as significant
MIN_RANDOM_RUNS = 10


@dataclass(frozen=True)
class ConceptImages:
    """A named set of pictures as model inputs: images (N, 3, S, S) float32, preprocessed."""

    name: str
    images: torch.Tensor


@dataclass
class TcavResult:
    """scores[concept][layer]: TCAV sign-count scores in [0, 1], one per random run;
    baseline[layer]: the random-vs-random scores; p_values[concept][layer]: two-sided t-test;
    cavs[concept][layer]: (runs, F) float32 unit CAVs pointing towards the concept.
    (captum's own CAV accuracy is not kept: for two classes it takes the argmax of a single
    output column, so it always predicts the first class.)"""

    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    baseline: dict[str, list[float]] = field(default_factory=dict)
    p_values: dict[str, dict[str, float]] = field(default_factory=dict)
    cavs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def significant(self, concept: str, layer: str, alpha: float = SIGNIFICANCE) -> bool:
        return bool(self.p_values[concept][layer] < alpha)


def seed_everything(seed: int) -> None:
    """captum's CAV training shuffles with ``random`` and fits sklearn's SGDClassifier without a
    random_state (numpy's global generator): seeding all three makes a run repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def captum_concepts(sets: list[ConceptImages], batch: int = 16) -> list:
    """captum Concepts with ids in list order, each reading its images in batches."""
    from captum.concept import Concept
    from torch.utils.data import DataLoader

    return [Concept(i, s.name, DataLoader(s.images, batch_size=batch)) for i, s in enumerate(sets)]


def experimental_sets(concepts: list, randoms: list) -> list[list]:
    """[concept, random_i] for every concept and i >= 1, then the baseline [random_(i-1), random_i]:
    random CAVs of different random "concepts", so that the baseline's spread is not that of one
    fixed random set against the others."""
    return [[c, r] for c in concepts for r in randoms[1:]] + [[a, b] for a, b in zip(randoms, randoms[1:])]


def t_test_p(scores: list[float], baseline: list[float]) -> float:
    """Two-sided Welch t-test p-value; 1.0 when both samples are constant and equal, 0.0 when constant
    and different (the t statistic is then undefined)."""
    from scipy import stats

    a, b = np.asarray(scores, np.float64), np.asarray(baseline, np.float64)
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def tcav_scores(module: nn.Module, layers: list[str], concepts: list[ConceptImages], randoms: list[ConceptImages],
                inputs: torch.Tensor, target: int, save_path: str, model_id: str, seed: int = 0,
                internal_batch: int = 16) -> TcavResult:
    """TCAV scores of each concept at each layer against ``len(randoms) - 1`` random runs.

    Consecutive random sets make the baseline's random-vs-random CAVs; inputs (N, 3, S, S) are the pictures whose
    ``target`` logit is differentiated. CAVs and activations are cached by captum under ``save_path``
    (keyed by ``model_id`` and the concept names: give names that change when the pictures do).
    """
    from captum.concept import TCAV

    all_sets = captum_concepts([*concepts, *randoms], internal_batch)
    mine, rand = all_sets[: len(concepts)], all_sets[len(concepts):]
    experiments = experimental_sets(mine, rand)
    seed_everything(seed)
    with warnings.catch_warnings():
        # captum advises a custom classifier for many concepts, and warns about its own tensor copies
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
        tcav = TCAV(module, layers, model_id=model_id, save_path=save_path)
        raw = tcav.interpret(inputs, experiments, target=target)
    result = TcavResult()
    for concept, c in zip(concepts, mine):
        result.scores[concept.name] = {layer: [] for layer in layers}
        result.cavs[concept.name] = {}
        for layer in layers:
            vectors = []
            for r in rand[1:]:
                key = f"{c.id}-{r.id}"
                result.scores[concept.name][layer].append(float(raw[key][layer]["sign_count"][0]))
                stats = tcav.cavs[key][layer].stats
                vectors.append(concept_direction(stats["weights"], stats["classes"], c.id))
            result.cavs[concept.name][layer] = np.stack(vectors)
    for layer in layers:
        result.baseline[layer] = [float(raw[f"{a.id}-{b.id}"][layer]["sign_count"][0]) for a, b in zip(rand, rand[1:])]
    for concept in concepts:
        result.p_values[concept.name] = {layer: t_test_p(result.scores[concept.name][layer], result.baseline[layer])
                                         for layer in layers}
    return result


def concept_direction(weights: torch.Tensor, classes, concept_id: int) -> np.ndarray:
    """The unit CAV pointing towards ``concept_id`` from captum's classifier weights (one row per
    class of the experimental set, as captum scores them)."""
    w = weights.detach().float().cpu().numpy()
    row = w[list(classes).index(concept_id)] if w.shape[0] > 1 else w[0]
    return (row / max(np.linalg.norm(row), 1e-12)).astype(np.float32)


def layer_gradient(module: nn.Module, inputs: torch.Tensor, layer: str, target: int | torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations, d logit[target] / d activations) at ``layer``, each (N, F) flattened.

    The layer's output is replaced by a leaf tensor for this one forward (this thread's: another
    thread's forward of the same model meanwhile is untouched), so the backward stops there: no
    parameter gradients, the model untouched afterwards. ``target``: a class for every input, or
    (N,) classes, one per input.
    """

    held: dict[str, torch.Tensor] = {}

    def hook(mod, args, output):
        leaf = output.detach().requires_grad_(True)
        held["act"] = leaf
        return leaf

    handle = register_own_forward_hook(module.get_submodule(layer), hook)
    try:
        with torch.enable_grad():
            logits = module(inputs)
            classes = torch.as_tensor(target, device=logits.device).expand(len(logits)).view(-1, 1)
            (grad,) = torch.autograd.grad(logits.gather(1, classes).sum(), held["act"])
    finally:
        handle.remove()
    return held["act"].detach().flatten(1), grad.flatten(1)


def sign_count_scores(gradients: torch.Tensor, cavs: torch.Tensor) -> torch.Tensor:
    """TCAV sign-count scores written out: (N, F) layer gradients, (K, F) CAVs -> (K,) fraction of
    inputs with a positive directional derivative along each CAV."""
    return ((gradients.float() @ cavs.float().T) > 0).float().mean(0)
