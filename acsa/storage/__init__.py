"""Layer 0, storage: atomic output folders, JSON files and the safetensors checkpoint format."""
