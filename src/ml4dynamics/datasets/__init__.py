"""Simulation datasets: generation with the exact closure, and validated zarr storage."""

from ml4dynamics.datasets.generation import generate_split
from ml4dynamics.datasets.store import (
    open_dataset,
    open_splits,
    validate_dataset,
    write_datasets,
)

__all__ = ["generate_split", "open_dataset", "open_splits", "validate_dataset", "write_datasets"]
