"""The DARTS space's `space` section (its own keys, defaults and checks), apart from the space so that the
supernet can read it without importing the space that builds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nas.arch.space import SpaceConfig
from nas.core.errors import UserError
from nas.core.limits import Range


@dataclass
class DartsOptions(SpaceConfig):
    """The DARTS space's `space` section: DARTS' search network (16 channels, 8 cells) and its own keys."""

    name: str = "darts"
    nodes: int = 4  # intermediate nodes per cell
    stem_multiplier: int = 3  # the stem's output channels, in multiples of init_channels
    # PC-DARTS (Xu et al. 2020; search_spaces/darts/supernet.py): 1/K of each edge's channels go through
    # the mixed op (1 = all, DARTS); a learnt weight per edge, softmax over each node's inputs
    partial_channels: int = 1
    edge_norm: bool = False

    RANGES: ClassVar[dict[str, Range]] = {
        "nodes": Range(1, 10),
        "stem_multiplier": Range(1, 16),
        "partial_channels": Range(1, 1024),
    }

    def check(self, cfg: object) -> None:
        """Every cell's channels (init_channels, doubled at each reduction) must split into K equal parts;
        the second-order step differentiates alpha alone, so it cannot train edge normalisation; a supernet
        needs both cell types, and its reduction cells sit at layers // 3 and 2 * layers // 3."""
        if self.layers < 3:
            raise UserError(
                f"space.layers={self.layers}: a DARTS supernet needs at least 3 layers (below that it has no "
                "reduction cell, so the reduce cell's architecture would never be trained)"
            )
        if self.init_channels % self.partial_channels:
            raise UserError(
                f"space.partial_channels={self.partial_channels} must divide space.init_channels="
                f"{self.init_channels} (1/K of every edge's channels go through its mixed op)"
            )
        bilevel = getattr(getattr(cfg, "search", None), "bilevel", "first_order")
        if self.edge_norm and bilevel != "first_order":
            raise UserError(f"space.edge_norm=true needs search.bilevel=first_order, got {bilevel}")
