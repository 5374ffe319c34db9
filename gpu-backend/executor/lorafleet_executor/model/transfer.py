"""Host-to-device copies of the step path."""

import numpy as np
import torch


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on the device without a stream sync (a blocking copy from pageable
    memory waits for every step queued before it)."""
    return torch.from_numpy(array).to(device, non_blocking=True)
