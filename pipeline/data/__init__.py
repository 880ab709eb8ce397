"""The dataset on disk: its format, writers and readers, the training sampler, CSV sources, fingerprints."""
