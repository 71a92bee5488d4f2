"""simxray: simulation-based inference for piled-up Chandra X-ray spectra.

The public objects are importable from here (loaded on first use, so ``import simxray``
stays light)::

    import simxray as sx
    obs = sx.Observation.from_pha("source_bin10.pi")   # PHA + ARF/RMF/background from the header
    obs.notice(1, 7)                                   # keV
    res = sx.fit(obs, "wabs*powerlaw", prior=sx.BXA_PRIOR, pileup={"ftime": 3.2, "fracexp": 1})
    res.summary(); res.plot_corner(); res.plot_spectrum(); idata = res.to_arviz()

``Model`` (expressions on energy edges), ``Prior``, ``Simulator``, ``FitProblem``,
``FitResult``, ``Posterior`` and ``Emulator`` are the objects everything composes through.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Observation": "simxray.observation",
    "Model": "simxray.models",
    "Prior": "simxray.simulator.prior",
    "Dist": "simxray.simulator.prior",
    "Simulator": "simxray.simulator.simulator",
    "ForwardModel": "simxray.simulator.simulator",
    "FitProblem": "simxray.inference.problem",
    "BXA_PRIOR": "simxray.inference.problem",
    "fit": "simxray.inference.fitting",
    "FitResult": "simxray.inference.result",
    "Posterior": "simxray.inference.posterior",
    "Emulator": "simxray.inference.emulator",
    "datasets": "simxray.datasets",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'simxray' has no attribute {name!r}")
    m = importlib.import_module(mod)
    value = m if name == "datasets" else getattr(m, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
