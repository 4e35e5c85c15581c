"""The bank's read API: loans with coverage, alerts, proofs, checkpoints and statements over
HTTP for the bank's own systems, and one page for loan officers (docs/api.md)."""
