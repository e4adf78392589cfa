"""Concrete search spaces. Importing this package registers each one in `nas.arch.space.SPACES`."""

from search_spaces import (
    darts,  # noqa: F401
    nb201,  # noqa: F401
)
