"""The TCAV bar chart: per layer, each concept's mean score over the random runs (± one standard
deviation) beside the random-vs-random baseline, marked * when significant and n.s. when not, just
above the error bar."""
from __future__ import annotations

import numpy as np

from toolbox.render.atlas import PALETTE


def tcav_chart(scores: dict[str, dict[str, list[float]]], baseline: dict[str, list[float]],
               p_values: dict[str, dict[str, float]], title: str, alpha: float = 0.05, width_px: int = 960,
               height_px: int = 540) -> np.ndarray:
    """(height_px, width_px, 3) uint8 BGR chart. scores[concept][layer]: per-run scores in [0, 1];
    p_values[concept][layer]: the t-test's; a bar is marked * when below ``alpha``, else n.s."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    concepts = list(scores)
    layers = list(baseline)
    groups = [*concepts, "random (baseline)"]
    colours = [tuple(c / 255 for c in PALETTE[i % len(PALETTE)][::-1]) for i in range(len(concepts))] + [(0.6,) * 3]
    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    bar_w = 0.8 / len(groups)
    x = np.arange(len(layers))
    for g, (name, colour) in enumerate(zip(groups, colours)):
        runs = [baseline[layer] if name == groups[-1] else scores[name][layer] for layer in layers]
        means = [float(np.mean(r)) for r in runs]
        stds = np.array([float(np.std(r)) for r in runs])
        errors = [np.minimum(stds, means), np.minimum(stds, 1 - np.array(means))]  # scores stay in [0, 1]
        pos = x - 0.4 + bar_w * (g + 0.5)
        ax.bar(pos, means, bar_w * 0.92, yerr=errors, capsize=3, color=colour, label=name, edgecolor="black",
               linewidth=0.5)
        if name == groups[-1]:
            continue
        for p, layer, top in zip(pos, layers, np.array(means) + errors[1]):  # above the error bar's cap
            pv = p_values[name][layer]
            ax.annotate(f"{'*' if pv < alpha else 'n.s.'}\np = {pv:.2g}", (p, top), xytext=(0, 4),
                        textcoords="offset points", ha="center", va="bottom", fontsize=9)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(x, layers)
    ax.set_ylim(0, 1.42)  # room above the bars for the p-values and the legend
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("TCAV score (fraction of inputs, mean ± sd over random runs)")
    ax.set_xlabel("layer")
    ax.set_title(title, fontsize=11)
    ax.legend(loc="upper right", fontsize=8, ncol=min(4, len(groups)))
    ax.text(0.0, -0.13, f"* p < {alpha:g}: two-sided t-test of the concept's scores against random-vs-random "
            "CAVs' scores; n.s. not significant", transform=ax.transAxes, fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., 2::-1])
