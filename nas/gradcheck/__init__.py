"""`nas gradcheck`: bias and variance of every estimator's architecture gradient, against the exact one.

On a supernet small enough to enumerate (NAS-Bench-201 with one cell per stage: 5^6 = 15,625
architectures; DARTS with one node per cell: 8^4 = 4,096), with fixed weights and one fixed batch:

1. `setup`: the supernet (a search run's last weights, or a config's fresh ones), the batch (the first of
   the search's architecture split), the alphas to measure at;
2. `exact`: L(z) of every architecture z (one forward pass each, only z's ops, batch statistics), and from
   it the exact gradient of E_{z ~ Cat(probs(alpha))}[L(z)] w.r.t. alpha;
3. `estimate`: N gradient estimates of each sampler at each tau, and their bias (cosine of the mean
   estimate to the exact gradient, bias² without the mean's noise), variance (trace of the covariance),
   and sign agreement per edge;
4. `report`: table, JSON, plots, TensorBoard.

The relaxed estimators (softmax, gumbel, drnas) estimate the gradient of another objective (the loss of
the relaxed, weighted-sum supernet); they are measured against the discrete objective anyway: that is
the one whose argmax becomes the architecture.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from nas.config import to_dict
from nas.gradcheck.estimate import Upstream, estimates, statistics
from nas.gradcheck.exact import (
    architecture_count,
    check_size,
    conditional_losses,
    enumerate_losses,
    exact_gradient,
)
from nas.gradcheck.setup import GradcheckConfig, load_gradcheck, prepare, samplers, search_config


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _best(losses: torch.Tensor, shapes: dict, primitives, top: int = 5) -> list[dict[str, Any]]:
    """The `top` architectures by loss: their op on every edge, per cell type."""
    values, flat = losses.flatten().topk(top, largest=False)
    out = []
    for value, index in zip(values.tolist(), flat.tolist()):
        z = list(torch.unravel_index(torch.tensor(index), losses.shape))
        ops, start = {}, 0
        for name, (edges, _) in shapes.items():
            ops[name] = [primitives[int(k)] for k in z[start : start + edges]]
            start += edges
        out.append({"loss": value, "ops": ops})
    return out


def gradcheck(gc: GradcheckConfig) -> dict[str, Any]:
    """Run the check; returns the report (also what `report.write` writes)."""
    cfg = search_config(gc)
    subject = prepare(gc, cfg)
    measured = samplers(gc, subject.space)  # checks every sampler's options before any work
    shapes = {name: tuple(a.shape) for name, a in subject.alphas.items()}
    count = check_size(shapes, subject.space.name, gc.max_architectures)
    out = Path(gc.out_dir)
    losses = enumerate_losses(subject.model, subject.batch, shapes, cache=out / "losses.pt", log=_log)
    upstream, results, references = Upstream(subject.model, subject.batch), [], {}
    for name, sampler in measured.items():
        exact, expected = exact_gradient(losses, sampler, subject.alphas)
        references[name] = {"exact": exact.tolist(), "expected_loss": expected}
        for tau in gc.taus:
            start = time.perf_counter()
            g = estimates(sampler, subject.alphas, tau, gc.samples, gc.seed, upstream)
            stats = statistics(g, exact, sum(e for e, _ in shapes.values()))
            results.append({"sampler": name, "tau": tau, **stats})
            _log(f"gradcheck: {name} tau {tau:g}: cos {stats['cosine']:.3f}, var/|g*|^2 "
                 f"{stats['rel_variance']:.3g} ({time.perf_counter() - start:.1f}s)")  # fmt: skip
    k, e, _ = architecture_count(shapes)
    subject_info = {
        "space": subject.space.name,
        "source": f"run {gc.run}" if gc.run else f"config {gc.base} (initial weights)",
        "alpha": gc.alpha,
        "alphas": {n: a.tolist() for n, a in subject.alphas.items()},
        "primitives": list(subject.space.primitives),
        "batch_size": gc.batch_size,
        "ops": k,
        "edges": e,
        "architectures": count,
        "loss_min": float(losses.min()),
        "loss_mean": float(losses.mean()),
        "loss_max": float(losses.max()),
        "expected_loss": conditional_losses(
            losses, torch.cat([a.softmax(-1) for a in subject.alphas.values()])
        )[1],
        "best": _best(losses, shapes, subject.space.primitives),
        "forward_backward_passes": upstream.passes,
    }
    return {
        "config": to_dict(gc),
        "search_config": to_dict(cfg),
        "subject": subject_info,
        "exact": references,
        "results": results,
    }


def main(config: str | None, overrides: list[str]) -> int:
    """`nas gradcheck --config FILE [key=value ...]`: run the check and write its outputs."""
    from nas.gradcheck.report import table, write

    gc = load_gradcheck(config, overrides)
    report = gradcheck(gc)
    print(table(report))
    for path in write(report, Path(gc.out_dir)):
        print(f"-> {path}")
    return 0


__all__ = ["GradcheckConfig", "gradcheck", "load_gradcheck", "main"]
