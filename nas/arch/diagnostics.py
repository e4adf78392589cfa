"""What a search logs about its architecture each epoch, so collapse is seen coming (Zela et al., 2020:
DARTS drifts towards parameter-free ops, skip connections above all).

- op probabilities softmax(alpha) per edge and cell type (the heatmap and TensorBoard scalars),
- mean entropy per cell type (nats; ln K = uniform, 0 = decided),
- the number of parameter-free ops (none, skip, pooling) in the derived first cell (DARTS: normal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from nas.arch.genotype import FORMATS, Genotype, describe
from nas.arch.space import SPACES
from nas.core.errors import UserError


def _probs(alpha: torch.Tensor) -> torch.Tensor:
    return torch.softmax(alpha.detach().double().cpu(), dim=-1)  # (E, K)


def probabilities(logits: Mapping[str, torch.Tensor], primitives: Sequence[str]) -> dict[str, Any]:
    """The op probabilities softmax(logits) per cell type, (E, K) as lists, with the primitives (the columns).
    `logits`: the sampler's `derive_logits` of alpha (alpha itself for every sampler but drnas)."""
    return {"primitives": list(primitives), **{name: _probs(a).tolist() for name, a in logits.items()}}


def entropy(alpha: torch.Tensor) -> float:
    """Mean over edges of the entropy of softmax(alpha), in nats."""
    p = _probs(alpha)
    return float(-(p * p.clamp_min(1e-300).log()).sum(-1).mean())


def parameter_free_ops(genotype: Genotype, cell: str, parameter_free: frozenset[str]) -> int:
    """How many of the cell's edges carry an op of `parameter_free` (the space's, `space.parameter_free`)."""
    return sum(op in parameter_free for op, _ in genotype.cells[cell].edges())


def epoch_diagnostics(alphas: Mapping[str, torch.Tensor], genotype: Genotype, space: Any) -> dict[str, Any]:
    """Named values for metrics.jsonl: entropy_<cell>, param_free_<first cell>, genotype string."""
    first = space.cell_types[0]
    out: dict[str, Any] = {f"entropy_{name}": entropy(a) for name, a in alphas.items()}
    out[f"param_free_{first}"] = parameter_free_ops(genotype, first, space.parameter_free)
    out["genotype"] = genotype_string(genotype)
    return out


def genotype_string(genotype: Genotype) -> str:
    """The genotype in its space's own string format (`space.string_format`, e.g. the DARTS Genotype(...)
    string); the text view where the space has none or the genotype does not fit it."""
    space = SPACES.get(genotype.space)
    if space.string_format is not None:
        try:
            return FORMATS.get(space.string_format).write(genotype)
        except UserError:
            pass
    return describe(genotype, space.input_states)


def genotype_text(genotype: Genotype) -> str:
    """Markdown-friendly text for TensorBoard: the text view and the native string."""
    text = describe(genotype, SPACES.get(genotype.space).input_states)
    return "    " + text.replace("\n", "\n    ") + "\n\n    " + genotype_string(genotype)


def heatmap_figure(alphas: Mapping[str, torch.Tensor], primitives: Sequence[str], title: str = ""):
    """A matplotlib figure: for each cell type, edges x ops op probabilities with the values written in."""
    from matplotlib.figure import Figure  # no pyplot: nothing left in a global registry

    names = list(alphas)
    fig = Figure(
        figsize=(
            1.0 + 0.9 * len(primitives) * len(names),
            0.9 + 0.32 * max(a.shape[0] for a in alphas.values()),
        )
    )
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names):
        p = _probs(alphas[name]).numpy()
        ax.imshow(p, cmap="viridis", vmin=0.0, vmax=max(1e-9, p.max()), aspect="auto")
        ax.set_xticks(range(len(primitives)), primitives, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(p.shape[0]), [f"e{e}" for e in range(p.shape[0])], fontsize=7)
        ax.set_title(f"{name} {title}".strip(), fontsize=9)
        for (i, j), v in np.ndenumerate(p):
            ax.text(
                j,
                i,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=5,
                color="w" if v < 0.6 * p.max() else "k",
            )
    fig.tight_layout()
    return fig


def log_alphas(
    logger: Any, alphas: Mapping[str, torch.Tensor], primitives: Sequence[str], epoch: int
) -> None:
    """Per-edge op probabilities as TensorBoard scalars and a heatmap image per epoch."""
    if not logger.enabled:
        return
    for name, alpha in alphas.items():
        for e, row in enumerate(_probs(alpha).tolist()):
            for op, value in zip(primitives, row):
                logger.tb.add_scalar(f"alpha_{name}/edge{e:02d}/{op}", value, epoch)
    logger.figure("alpha/heatmap", heatmap_figure(alphas, primitives, f"epoch {epoch}"), epoch)
