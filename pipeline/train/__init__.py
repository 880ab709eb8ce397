"""Training on Ray Train: the recipe every training stage shares, the per-worker loop, metrics."""
