"""Retraining a discrete architecture from scratch, and exporting the retrained network (`export`)."""
