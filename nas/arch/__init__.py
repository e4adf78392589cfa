"""Architectures: the search-space contract (`SPACES`), genotypes and their formats, the mixed op, the
derive rule's structure, what alpha says about a cell (`diagnostics`), cell pictures and ground-truth
lookup."""
