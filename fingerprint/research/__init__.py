"""The paper's multi-scale pipeline: aligned stand-in, sweep, metrics and judges, reports and exports."""
