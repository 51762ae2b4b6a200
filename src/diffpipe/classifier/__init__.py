"""The digit classifier behind the in-domain metrics: a small CNN, its training, its checkpoint, `classify`.

A subpackage of its own so that the classifier stage depends on this code, the data code and the core only:
editing the diffusion networks or the metrics never retrains it.
"""
