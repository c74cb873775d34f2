"""Planting a fingerprint: the training set, LoRA training, the embed itself, the owner's self-check, and the
OpenAI fine-tuning path."""
