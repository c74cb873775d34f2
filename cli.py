"""The ``fingerprint`` command line: keys, embed/verify, registry, auditor tools and the paper's pipeline."""

from __future__ import annotations

import os
import warnings

import click

from fingerprint.commands.audit_cmd import audit_data
from fingerprint.commands.cert_cmd import cert_group
from fingerprint.commands.common import ErrorHandlingGroup
from fingerprint.commands.dataset_cmd import certify, dataset
from fingerprint.commands.embed_cmd import embed
from fingerprint.commands.evidence_cmd import evidence_group
from fingerprint.commands.jobs_cmd import jobs_group
from fingerprint.commands.keys_cmd import keygen, rekey, reveal
from fingerprint.commands.monitor_cmd import monitor
from fingerprint.commands.registry_cmd import registry_group
from fingerprint.commands.robustness_cmd import robustness
from fingerprint.commands.scan_cmd import scan
from fingerprint.commands.sweep_cmd import align, report, sweep, sweep_import
from fingerprint.commands.verify_cmd import verify


@click.group(cls=ErrorHandlingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="suretrap")
def main() -> None:
    """Plant, certify and verify key-derived "Sure" fingerprints in language models."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # rich shows our own progress


for command in (keygen, rekey, embed, verify, reveal, dataset, certify, monitor, cert_group, registry_group,
                jobs_group, evidence_group, audit_data, scan, align, sweep, report, sweep_import, robustness):
    main.add_command(command)

if __name__ == "__main__":
    main()
