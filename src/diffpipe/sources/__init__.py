"""Pinned external inputs, each checked against a recorded digest: MNIST, the Noto emoji, the FID Inception weights."""
