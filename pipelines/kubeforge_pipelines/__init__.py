"""The kfp v2 fine-tuning pipeline and its components (prepare, fine-tune, evaluate, register).
Not built yet: see issue #4."""
