"""Checkpoint folders of this project and of the original TRM code, read and written in one place."""
