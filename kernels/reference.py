"""The plain PyTorch NSA reference, at the path the issue names (lives in kernels/nsa/)."""

from .nsa.reference import (
    compress_mean_reference,
    nsa_reference,
    overlap_matrix,
    select_blocks_reference,
)

__all__ = ["compress_mean_reference", "nsa_reference", "overlap_matrix", "select_blocks_reference"]
