"""Reconciliation: stock from verified events against the loan book, as named conditions."""
