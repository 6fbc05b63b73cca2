"""Foundations every package may import: errors, atomic writes, safe file reading, run records."""

# The package version lives here, at the bottom layer, so run records can name it without
# importing the `nas` facade (which loads the student); `nas.__version__` re-exports it.
__version__ = "0.1.0"
