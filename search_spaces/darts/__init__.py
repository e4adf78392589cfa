"""The DARTS CNN search space."""

from search_spaces.darts.formats import from_darts_string, to_darts_string
from search_spaces.darts.space import SPACE, DartsSpace, derive_cell

__all__ = ["SPACE", "DartsSpace", "derive_cell", "from_darts_string", "to_darts_string"]
