"""The kfp v2 fine-tuning pipeline (prepare, fine-tune, evaluate, register), its step functions
and the tiny model and dataset the project builds for itself. See docs/finetuning.md.

Importing this package pulls in neither torch nor kfp. The compiled IR the kfp backend submits
is package data (``compiled/finetune.yaml``)."""
