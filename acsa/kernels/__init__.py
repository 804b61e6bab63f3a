"""Layer 2, kernels: parameter-free tensor code that computes a model quantity fast (the local score)."""
