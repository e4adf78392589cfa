"""The exact architecture gradient, by enumerating every architecture of a small supernet.

With independent categoricals z_e ~ q_e (one per edge and cell type, q = the sampler's `probs(alpha)`),
the expected loss is multilinear in q:

    E_q[L(z)] = sum_z prod_e q_e(z_e) L(z),   dE/dq_e(k) = E[L(z) | z_e = k] =: c_e(k),

so d E / d alpha = (d q / d alpha)^T c, one vector-Jacobian product through `probs` (for softmax(alpha):
q_e * (c_e - q_e . c_e), the familiar sum_z p(z) L(z) (onehot(z_e) - p_e)). Every L(z) is one forward pass
of the supernet running only z's ops (`MixedOp`'s chosen-op path, batch statistics), on one fixed batch.
The table of losses does not depend on alpha or on the sampler; it is cached (and resumed) in
`losses.pt` under a fingerprint of the weights and the batch.
"""

from __future__ import annotations

import hashlib
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from nas.core.atomic import atomic_write
from nas.core.errors import UserError
from nas.sampling import ArchSample, Sampler

Shapes = dict[str, tuple[int, int]]  # cell type -> (edges, ops), in sorted order
SAVE_EVERY = 500  # architectures between cache writes


def architecture_count(shapes: Shapes) -> tuple[int, int, int]:
    """(K, E, K^E): ops per edge, edges over all cell types, architectures."""
    ks = {k for _, k in shapes.values()}
    if len(ks) != 1:
        raise UserError(f"gradcheck needs the same number of ops on every edge, got {sorted(ks)}")
    k, e = ks.pop(), sum(n for n, _ in shapes.values())
    return k, e, k**e


def check_size(shapes: Shapes, space: str, limit: int) -> int:
    """The number of architectures; UserError (one line, why) if it is above `limit`."""
    k, e, n = architecture_count(shapes)
    if n > limit:
        cells = " + ".join(f"{c} {m}" for c, (m, _) in shapes.items())
        raise UserError(
            f"gradcheck: space {space} has {k}^{e} = {n:,} architectures ({k} ops on each of {cells} edges), "
            f"more than max_architectures={limit:,} (one forward pass each); use a space with fewer edges "
            f"(e.g. the DARTS space at space.nodes=1: 8^4 = 4,096) or raise max_architectures"
        )
    return n


def fingerprint(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> str:
    """SHA-256 of the supernet's weights and of the batch: what the loss table depends on (BatchNorm
    normalises with batch statistics, so its running statistics do not matter; alpha does not either)."""
    h = hashlib.sha256()
    for name, t in [*model.named_parameters(), ("x", batch[0]), ("y", batch[1])]:
        if name.startswith("alphas."):
            continue
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def one_hot_sample(z: tuple[int, ...], shapes: Shapes, device: torch.device) -> dict[str, ArchSample]:
    """Architecture z (one op index per edge, cell types in sorted order) as a chosen-only sample."""
    out, start = {}, 0
    for name, (edges, k) in shapes.items():
        choices = list(z[start : start + edges])
        weights = F.one_hot(torch.tensor(choices), k).float().to(device)  # (E, K)
        out[name] = ArchSample(weights, choices)
        start += edges
    return out


def enumerate_losses(
    model: torch.nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    shapes: Shapes,
    cache: Path | None = None,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> torch.Tensor:
    """L(z) for every architecture, float64 of shape (K,) * E (axes: edges, cell types in sorted order).

    Resumes from `cache` when it holds a table for the same weights and batch, and saves progress there.
    """
    k, e, n = architecture_count(shapes)
    key = fingerprint(model, batch) if cache is not None else ""
    losses = torch.full((n,), float("nan"), dtype=torch.float64)
    done = 0
    if cache is not None and cache.is_file():
        state = torch.load(cache, weights_only=True)
        if state.get("key") == key and state["losses"].numel() == n:
            losses, done = state["losses"], int(state["done"])
    if done < n:
        log(
            f"gradcheck: enumerating {k}^{e} = {n:,} architectures"
            + (f" (resuming at {done:,})" if done else "")
        )
    x, y = batch
    start, last = time.perf_counter(), done
    with torch.inference_mode():
        for i, z in enumerate(itertools.product(range(k), repeat=e)):
            if i < done:
                continue
            losses[i] = criterion(model(x, one_hot_sample(z, shapes, x.device)), y).double().item()
            if (i + 1) % SAVE_EVERY == 0 or i + 1 == n:
                rate = (i + 1 - last) / (time.perf_counter() - start)
                log(
                    f"gradcheck: {i + 1:,}/{n:,} architectures, {rate:.1f}/s, {(n - i - 1) / rate / 60:.1f} min left"
                )
                if cache is not None:
                    _save(cache, key, losses, i + 1)
    return losses.view((k,) * e)


def _save(path: Path, key: str, losses: torch.Tensor, done: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save({"key": key, "losses": losses, "done": done}, f))


def conditional_losses(losses: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, float]:
    """c (E, K): c_e(k) = E[L | z_e = k] under independent q (E, K) rows, and E[L] itself (float64)."""
    q = q.detach().double().cpu()
    e = q.shape[0]
    c = torch.empty_like(q)
    for edge in range(e):
        weighted = losses
        for other in range(e):  # contract every other edge with its distribution
            if other != edge:
                shape = [1] * e
                shape[other] = -1
                weighted = weighted * q[other].view(shape)
        others = [d for d in range(e) if d != edge]
        c[edge] = weighted.sum(dim=others) if others else weighted  # (sum over dim=[] would sum everything)
    return c, float((c[0] * q[0]).sum())


def exact_gradient(
    losses: torch.Tensor, sampler: Sampler, alphas: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, float]:
    """d/d alpha E_{z ~ Cat(sampler.probs(alpha))}[L(z)], flattened over the sorted cell types (float64),
    and the expected loss."""
    leaves = {k: a.detach().double().clone().requires_grad_() for k, a in sorted(alphas.items())}
    q = torch.cat([sampler.probs(a).double() for a in leaves.values()])  # (E, K), rows in enumeration order
    c, expected = conditional_losses(losses, q)
    grads = torch.autograd.grad((q * c.to(q.device)).sum(), list(leaves.values()))
    return torch.cat([g.flatten() for g in grads]).cpu(), expected
