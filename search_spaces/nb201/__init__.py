"""The NAS-Bench-201 search space."""

from search_spaces.nb201.cell import derive_cell
from search_spaces.nb201.formats import from_nb201_string, to_nb201_string
from search_spaces.nb201.space import SPACE, NB201Space

__all__ = ["SPACE", "NB201Space", "derive_cell", "from_nb201_string", "to_nb201_string"]
