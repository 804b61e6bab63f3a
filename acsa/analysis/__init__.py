"""Layer 6, analysis: what the explain stage computes from a trained model and its rankings, and the
reference points and text-feature diagnostic of the reference_points stage."""
