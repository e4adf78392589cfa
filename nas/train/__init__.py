"""Retraining a discrete architecture from scratch."""
