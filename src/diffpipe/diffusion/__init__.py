"""Schedules, samplers, batched generation, the training loop and the checkpoint format."""
