"""Simulator: priors, TOML configs, the batched forward simulator and HDF5 campaigns.

``load_config(path)`` → :class:`SimConfig`; ``Simulator.from_config(cfg)``;
``run_campaign(cfg, n, out, seed=..., workers=..., scheduler=...)`` writes a dataset
(layout in ``docs/ARCHITECTURE.md``); ``read_dataset(path)`` reads one back.
"""

from __future__ import annotations

from .campaign import chunk_rng, read_dataset, run_campaign
from .config import SimConfig, config_from_dict, load_config
from .prior import Dist, Prior
from .simulator import Simulator

__all__ = ["Dist", "Prior", "SimConfig", "Simulator", "chunk_rng", "config_from_dict", "load_config",
           "read_dataset", "run_campaign"]
