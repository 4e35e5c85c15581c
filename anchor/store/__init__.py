"""Anchor storage: one schema on SQLite (default) or PostgreSQL (several workers)."""
