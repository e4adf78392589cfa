"""The DARTS CNN search space."""

from search_spaces.darts.space import SPACE, DartsSpace, derive_cell

__all__ = ["SPACE", "DartsSpace", "derive_cell"]
