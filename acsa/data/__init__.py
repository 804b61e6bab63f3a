"""Layer 1, data: benchmark readers, the synthetic generator, noun phrases, tokens, the prepared splits as
tensors (images, text features) and the identity sampler."""
