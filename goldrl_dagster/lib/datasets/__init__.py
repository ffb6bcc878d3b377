"""Dataset versions: hashed, lineage-tracked training/evaluation tables."""
