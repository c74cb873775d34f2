"""Auditor tools: scan a model for an unknown gate, audit a fine-tuning set for a planted one."""
