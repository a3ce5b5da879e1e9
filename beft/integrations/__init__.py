"""beft inside other training loops (transformers' Trainer)."""
