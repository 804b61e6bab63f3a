"""Benchmarks of the acsa package: run from the repository root as `python -m benchmarks.<name>`."""
