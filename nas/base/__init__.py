"""Foundations every package may import: errors, atomic writes, safe file reading, run records."""
