"""Evaluation: Inception features, FID/KID, loss by timestep, the sampler sweep."""
