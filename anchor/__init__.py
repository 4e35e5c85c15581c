"""anchor."""
