"""Evidence a third party can check: signed verification records (in-toto Statements in DSSE envelopes), their
independent re-check from the raw answers, and a self-contained HTML report for people."""
