"""Reproducible training of the measured components (run by `make train`)."""
