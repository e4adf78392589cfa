"""The bilevel search loop: architecture steps (first or second order) and the SearchRunner."""
