"""Independent rebuilder and verifier for CPython source releases."""

__version__ = "0.1.0"
