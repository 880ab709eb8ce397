"""Inference with a trained checkpoint: batch prediction on Ray Data and test-time copies."""
