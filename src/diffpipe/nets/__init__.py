"""The noise-predictor networks (they know nothing of diffusion) and the builder that picks one from params."""
