"""The NAS-Bench-201 search space."""

from search_spaces.nb201.space import SPACE, NB201Space, derive_cell

__all__ = ["SPACE", "NB201Space", "derive_cell"]
