"""Benchmarks: readers, the synthetic generator, noun phrases, datasets and the identity sampler."""
