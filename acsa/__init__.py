"""ACSA: Asymmetric Cross-Scale Alignment for text-based person search."""

__version__ = "0.1.0"
