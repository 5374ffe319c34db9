"""lorafleet's executor: owns the tensors and carries out the engine's step plans."""
