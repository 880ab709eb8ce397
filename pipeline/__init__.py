"""Wires `augment/` and `trm/` to Ray, Hydra, storage and logging: `python -m pipeline.run stage=...`."""
