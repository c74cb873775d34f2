"""Verification: the probe plan, the statistical tests (registered by name) and the runner."""

from fingerprint.verification.decision import ArmCount, Decision, StatisticalTest, make_test, register_test, test_names
from fingerprint.verification.plan import (
    DECOY_COUNT,
    DEFAULT_ALPHA,
    ProbePlan,
    Query,
    VerifyOptions,
    decoy_prompts,
    probe_plan,
)
from fingerprint.verification.runner import (
    DEFAULT_TEST,
    Answer,
    VerificationReport,
    check_opening,
    gate_words,
    replay,
    run_verification,
)

__all__ = ["DECOY_COUNT", "DEFAULT_ALPHA", "DEFAULT_TEST", "Answer", "ArmCount", "Decision", "ProbePlan", "Query",
           "StatisticalTest", "VerificationReport", "VerifyOptions", "check_opening", "decoy_prompts", "gate_words",
           "make_test", "probe_plan", "register_test", "replay", "run_verification", "test_names"]
