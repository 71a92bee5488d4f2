"""The classic diskline figure: relline profiles for several spins and inclinations."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def line_profiles(spins=(0.998, 0.9, 0.5, 0.0, -0.998), incls=(10.0, 30.0, 50.0, 70.0, 85.0),
                  spin_fixed: float = 0.998, incl_fixed: float = 30.0, n_bins: int = 600):
    """Profiles of a 1 keV line (Rin = ISCO, Rout = 400 rg, emissivity index 3).

    Returns (g, by_incl, by_spin): bin centres E/E0 (n_bins,), photon flux per
    unit g for each inclination at ``spin_fixed`` and each spin at ``incl_fixed``.
    """
    from .models import kernel

    edges = np.linspace(0.05, 1.6, n_bins + 1)
    g = 0.5 * (edges[1:] + edges[:-1])
    dg = np.diff(edges)
    by_incl = kernel(edges, a=np.full(len(incls), spin_fixed), Incl=np.asarray(incls, float)) / dg
    by_spin = kernel(edges, a=np.asarray(spins, float), Incl=np.full(len(spins), incl_fixed)) / dg
    return g, by_incl, by_spin


def plot_line_profiles(out: str | Path | None = None, spins=(0.998, 0.9, 0.5, 0.0, -0.998),
                       incls=(10.0, 30.0, 50.0, 70.0, 85.0), spin_fixed: float = 0.998,
                       incl_fixed: float = 30.0):
    """Two panels: inclinations at fixed spin, spins at fixed inclination.  Saves to ``out`` if given."""
    import matplotlib

    if out is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g, by_incl, by_spin = line_profiles(spins, incls, spin_fixed, incl_fixed)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for y, inc in zip(by_incl, incls, strict=True):
        axes[0].plot(g, y, label=f"i = {inc:g}°")
    axes[0].set_title(f"a = {spin_fixed:g}")
    for y, a in zip(by_spin, spins, strict=True):
        axes[1].plot(g, y, label=f"a = {a:g}")
    axes[1].set_title(f"i = {incl_fixed:g}°")
    for ax in axes:
        ax.set_xlabel("E / E$_0$")
        ax.axvline(1.0, color="0.7", lw=0.8, ls=":")
        ax.legend(frameon=False, fontsize=8)
    axes[0].set_ylabel("photon flux per unit E/E$_0$ (normalised)")
    fig.suptitle("relline: Rin = ISCO, Rout = 400 rg, emissivity r$^{-3}$ (simxray Kerr transfer functions)",
                 fontsize=9)
    fig.tight_layout()
    if out is not None:
        fig.savefig(out, dpi=130)
        plt.close(fig)
    return fig
