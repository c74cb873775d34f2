"""Robustness: what happens to a stolen model (derivatives, one registered class each) and whether the
fingerprint survives it (the matrix verifies every derivative as ``verify`` does)."""

from fingerprint.robustness.derivatives import DERIVATIVES, Context, Derivative, Suspect, derivative_kinds, register
from fingerprint.robustness.matrix import RobustnessRow, control_label, default_matrix, run_matrix

__all__ = ["DERIVATIVES", "Context", "Derivative", "RobustnessRow", "Suspect", "control_label", "default_matrix",
           "derivative_kinds", "register", "run_matrix"]
