"""Layer 4, scoring: encode a split, score queries against a gallery (global, local, fused), rank metrics."""
