"""Puzzles as numpy arrays: generation, validation, encodings and transforms. No Ray, no torch."""
