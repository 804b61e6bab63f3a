"""Layer 3, model: encoders, the asymmetric cross-attention as the paper writes it, the ACSA model
(`acsa.model.acsa.ACSA`, saved and rebuilt with `save` / `from_checkpoint`) and the losses."""
