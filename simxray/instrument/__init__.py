"""Instrument layer: response folding (ARF × exposure, RMF) and the Davis pileup model."""

from .pileup import (
    HARD_LIMITS,
    PILEUP_PARAMETERS,
    KernelGrid,
    Pileup,
    PileupOutput,
    PileupParams,
    arf_on_grid,
    davis_pileup,
    get_pileup,
    piled_counts,
)
from .response import Response, default_device

__all__ = [
    "HARD_LIMITS", "PILEUP_PARAMETERS", "KernelGrid", "Pileup", "PileupOutput", "PileupParams",
    "Response", "arf_on_grid", "davis_pileup", "default_device", "get_pileup", "piled_counts",
]
