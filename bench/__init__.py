"""Benchmarks of ktune: one module per table in BENCHMARKS.md (`python -m bench.<name> --help`)."""
