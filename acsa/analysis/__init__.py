"""Layer 6, analysis: what the explain stage computes from a trained model and its rankings."""
