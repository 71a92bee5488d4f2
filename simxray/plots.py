"""Plots shared across simxray: corner, spectrum + residuals, unfolded spectrum,
coverage, SBC ranks.

All functions write a PNG (atomically) and return its path; matplotlib runs with the
non-interactive Agg backend.  Parameter axes carry the names astronomers write
(:func:`param_label`), spectra are in counts s⁻¹ keV⁻¹ against energy in keV.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .provenance import atomic_path

_LABELS = {
    "nh": r"$N_{\rm H}$ [$10^{22}$ cm$^{-2}$]",
    "phoindex": r"$\Gamma$",
    "norm": r"norm [ph keV$^{-1}$ cm$^{-2}$ s$^{-1}$]",
    "redshift": r"$z$",
    "kt": r"$kT$ [keV]",
    "linee": r"$E_{\rm line}$ [keV]",
    "sigma": r"$\sigma$ [keV]",
    "highecut": r"$E_{\rm cut}$ [keV]",
    "pileup.alpha": r"$\alpha$ (grade migration)",
    "pileup.g0": r"$g_0$ (grade correction)",
    "pileup.f": r"$f$ (piled PSF fraction)",
    "pileup.n": r"$n$ (pileup regions)",
    "pileup.ftime": r"frame time [s]",
    "pileup.fracexp": r"fractional exposure",
    "pileup_fraction": "pileup fraction",
}


def param_label(name: str, unit: str | None = None) -> str:
    """The label astronomers write for a parameter, e.g. ``nH`` -> N_H [10^22 cm^-2]."""
    key = name.lower()
    if key in _LABELS:
        return _LABELS[key]
    short = key.rsplit(".", 1)[-1] if not key.startswith("pileup.") else key
    if short in _LABELS:
        return _LABELS[short]
    return f"{name} [{unit}]" if unit else name


def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary file, then rename) and close it."""
    p = Path(path)
    tmp = atomic_path(p)
    fig.savefig(tmp, dpi=dpi, format=p.suffix.lstrip(".") or "png")
    os.replace(tmp, p)
    _pyplot().close(fig)
    return p


_save = save_figure


def _import_corner():
    """Import the corner package without its optional ArviZ bridge (3+ s of imports)."""
    if "corner" in sys.modules or "arviz" in sys.modules:
        import corner

        return corner
    sys.modules["corner.arviz_corner"] = None  # corner treats this as 'arviz not installed'
    try:
        import corner
    finally:
        sys.modules.pop("corner.arviz_corner", None)
    return corner


def corner_plot(samples: np.ndarray, names: Sequence[str], path: str | os.PathLike, *,
                truths: Sequence[float] | None = None, title: str | None = None,
                log: Sequence[bool] | None = None, max_points: int = 20000) -> Path:
    """Corner plot (corner package) of posterior samples (N, P) with 5/50/95 % quantiles."""
    _pyplot()
    corner = _import_corner()
    s = np.asarray(samples, dtype=float)[:max_points]
    labels = [param_label(n) for n in names]
    if log is not None:
        s = s.copy()
        for i, lg in enumerate(log):
            if lg:
                s[:, i] = np.log10(s[:, i])
                labels[i] = r"$\log_{10}$ " + labels[i]
        if truths is not None:
            truths = [np.log10(t) if lg else t for t, lg in zip(truths, log, strict=True)]
    P = s.shape[1]
    fig = _pyplot().figure(figsize=(2.3 * P + 0.8, 2.3 * P + 0.8))
    corner.corner(s, fig=fig, labels=labels, quantiles=[0.05, 0.5, 0.95], show_titles=True,
                  title_fmt=".3g", title_kwargs={"fontsize": 8}, label_kwargs={"fontsize": 9},
                  truths=truths, bins=30, smooth=1.0, max_n_ticks=4, plot_datapoints=False,
                  levels=(0.68, 0.9), color="C0", labelpad=0.08)
    fig.subplots_adjust(left=0.12, bottom=0.12, right=0.97, top=0.92, wspace=0.08, hspace=0.08)
    if title:
        fig.suptitle(title + "  (contours: 68%, 90%; dashed: 5/50/95%)", fontsize=10, y=0.99)
    return _save(fig, path)


def group_for_display(counts: np.ndarray, min_counts: int = 15) -> np.ndarray:
    """Group labels (C,) that merge adjacent channels until each group has >= min_counts."""
    labels = np.zeros(len(counts), dtype=int)
    g, acc = 0, 0.0
    for i, c in enumerate(counts):
        labels[i] = g
        acc += c
        if acc >= min_counts:
            g, acc = g + 1, 0.0
    if acc < min_counts and g > 0:          # fold a short tail into the previous group
        labels[labels == g] = g - 1
    return labels


def _grouped(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n = labels.max() + 1
    v = np.atleast_2d(values)
    out = np.zeros((v.shape[0], n))
    for k in range(v.shape[0]):
        out[k] = np.bincount(labels, weights=v[k], minlength=n)
    return out if np.ndim(values) > 1 else out[0]


def spectrum_plot(e_lo: np.ndarray, e_hi: np.ndarray, counts: np.ndarray, exposure: float,
                  path: str | os.PathLike, *, model: np.ndarray, model_unpiled: np.ndarray | None = None,
                  background: np.ndarray | None = None, title: str | None = None,
                  min_counts: int = 15, band: float = 0.90, note: str | None = None) -> Path:
    """Data, posterior-predictive median and band, optional pileup-free model, residuals.

    ``model`` / ``model_unpiled``: expected counts per channel for posterior draws (K, C)
    (background included in ``model`` if the data contain background).  Channels are
    grouped for display only (>= ``min_counts`` counts per group).
    """
    plt = _pyplot()
    labels = group_for_display(counts, min_counts)
    lo = np.array([e_lo[labels == g].min() for g in range(labels.max() + 1)])
    hi = np.array([e_hi[labels == g].max() for g in range(labels.max() + 1)])
    width, mid = hi - lo, 0.5 * (hi + lo)
    scale = 1.0 / (exposure * width)
    d = _grouped(counts, labels)
    m = _grouped(np.atleast_2d(model), labels)
    q = [(1 - band) / 2 * 100, 50, (1 + band) / 2 * 100]
    m_lo, m_med, m_hi = np.percentile(m, q, axis=0)
    fig, (ax, rx) = plt.subplots(2, 1, sharex=True, figsize=(7.5, 6.0),
                                 gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.05})
    ax.errorbar(mid, d * scale, xerr=width / 2, yerr=np.sqrt(np.maximum(d, 1)) * scale, fmt="o",
                ms=2.5, color="k", lw=0.8, label="data", zorder=3)
    edges = np.append(lo, hi[-1])

    def steps(y):
        return np.append(y, y[-1])

    ax.fill_between(edges, steps(m_lo * scale), steps(m_hi * scale), step="post", color="C0",
                    alpha=0.3, lw=0, label=f"with pileup, {band:.0%} band")
    ax.step(edges, steps(m_med * scale), where="post", color="C0", lw=1.4,
            label="with pileup, median")
    if model_unpiled is not None:
        u = _grouped(np.atleast_2d(model_unpiled), labels)
        u_lo, u_med, u_hi = np.percentile(u, q, axis=0)
        ax.fill_between(edges, steps(u_lo * scale), steps(u_hi * scale), step="post", color="C3",
                        alpha=0.2, lw=0)
        ax.step(edges, steps(u_med * scale), where="post", color="C3", lw=1.2, ls="--",
                label="same source, no pileup")
    if background is not None and np.sum(background) > 0.01 * np.sum(counts):
        b = _grouped(background, labels)
        ax.step(edges, steps(b * scale), where="post", color="0.5", lw=0.9, ls=":",
                label="background")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(r"counts s$^{-1}$ keV$^{-1}$")
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    if note:
        ax.text(0.02, 0.03, note, transform=ax.transAxes, fontsize=8, va="bottom")
    sig = np.sqrt(np.maximum(m_med, 1e-9))
    res = (d - m_med) / sig
    rx.axhline(0, color="0.4", lw=0.8)
    rx.fill_between(edges, steps((m_lo - m_med) / sig), steps((m_hi - m_med) / sig), step="post",
                    color="C0", alpha=0.3, lw=0)
    rx.errorbar(mid, res, xerr=width / 2, yerr=np.sqrt(np.maximum(d, 1)) / sig, fmt="o", ms=2.5,
                color="k", lw=0.8)
    rx.set_ylabel(r"(data$-$model)/$\sigma$")
    rx.set_xlabel("energy [keV]")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ticks = [t for t in (0.3, 0.5, 1, 2, 3, 5, 8, 10) if lo[0] <= t <= hi[-1]]
    rx.set_xticks(ticks)
    rx.xaxis.set_major_formatter(ScalarFormatter())
    rx.xaxis.set_minor_formatter(NullFormatter())
    fig.subplots_adjust(left=0.12, right=0.97, top=0.93, bottom=0.1)
    return _save(fig, path)


def unfolded_plot(e_lo: np.ndarray, e_hi: np.ndarray, counts: np.ndarray,
                  path: str | os.PathLike, *, source_flux: np.ndarray, model: np.ndarray,
                  model_unpiled: np.ndarray | None = None, background: np.ndarray | None = None,
                  units: str = "eeuf", title: str | None = None, min_counts: int = 15,
                  band: float = 0.90, note: str | None = None) -> Path:
    """Unfolded spectrum: data unfolded through the response (and pileup) against the
    source model, with the spectrum pileup turns it into, and the data/model ratio.

    Per channel (noticed channels, C) and posterior draw (K): ``source_flux`` (K, C) the
    model's photon flux density averaged over the channel's nominal energy range
    [photons cm⁻² s⁻¹ keV⁻¹]; ``model`` (K, C) expected source counts with pileup (as
    fitted); ``model_unpiled`` (K, C) the same without pileup (None when no pileup was
    fitted); ``background`` (C,) expected background counts.  ``units``: ``"eeuf"``
    (E·F_E = E² N(E), keV cm⁻² s⁻¹, XSPEC's eeufspec) or ``"uf"`` (N(E), XSPEC's ufspec).
    The arrays come from :func:`unfolded_spectrum`, which also documents the unfolding.
    """
    plt = _pyplot()
    u = unfolded_spectrum(e_lo, e_hi, counts, source_flux=source_flux, model=model,
                          model_unpiled=model_unpiled, background=background, units=units,
                          min_counts=min_counts, band=band)
    lo, hi, mid = u["e_lo"], u["e_hi"], u["energy"]
    fig, (ax, rx) = plt.subplots(2, 1, sharex=True, figsize=(7.5, 6.0),
                                 gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.05})
    edges = np.append(lo, hi[-1])

    def steps(y):
        return np.append(y, y[-1])

    piled = model_unpiled is not None
    ax.errorbar(mid, u["data"], xerr=(hi - lo) / 2, yerr=u["data_err"], fmt="o", ms=2.5,
                color="k", lw=0.8, zorder=3,
                label="data unfolded through response + pileup" if piled else "data (unfolded)")
    ax.fill_between(edges, steps(u["source"][0]), steps(u["source"][2]), step="post",
                    color="C0", alpha=0.3, lw=0)
    ax.step(edges, steps(u["source"][1]), where="post", color="C0", lw=1.4,
            label=f"source model (no pileup), median and {band:.0%} band")
    if piled:
        ax.fill_between(edges, steps(u["piled"][0]), steps(u["piled"][2]), step="post",
                        color="C3", alpha=0.2, lw=0)
        ax.step(edges, steps(u["piled"][1]), where="post", color="C3", lw=1.2, ls="--",
                label="same source as detected with pileup")
        ax.errorbar(mid, u["data_no_pileup"], yerr=u["data_no_pileup_err"], fmt="s", ms=2.2,
                    color="C3", mfc="white", lw=0.6, alpha=0.8, zorder=2,
                    label="data unfolded ignoring pileup")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(r"$E\,F_E$ [keV cm$^{-2}$ s$^{-1}$]" if units == "eeuf"
                  else r"photons cm$^{-2}$ s$^{-1}$ keV$^{-1}$")
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    if note:
        ax.text(0.02, 0.03, note, transform=ax.transAxes, fontsize=8, va="bottom")
    rx.axhline(1.0, color="0.4", lw=0.8)
    rx.errorbar(mid, u["ratio"], xerr=(hi - lo) / 2, yerr=u["ratio_err"], fmt="o", ms=2.5,
                color="k", lw=0.8)
    rx.set_ylabel("data / model")
    rx.set_xlabel("energy [keV]")
    from matplotlib.ticker import NullFormatter

    # an unfiltered ACIS spectrum starts at ~1 eV: show from 0.1 keV (the data are unchanged)
    x0, x1 = max(float(lo[0]), 0.1), float(hi[-1])
    rx.set_xlim(x0, x1)
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10) if x0 <= t <= x1]
    rx.set_xticks(ticks, [f"{t:g}" for t in ticks])
    rx.xaxis.set_minor_formatter(NullFormatter())
    fig.subplots_adjust(left=0.13, right=0.97, top=0.93, bottom=0.1)
    return _save(fig, path)


def unfolded_spectrum(e_lo: np.ndarray, e_hi: np.ndarray, counts: np.ndarray, *,
                      source_flux: np.ndarray, model: np.ndarray,
                      model_unpiled: np.ndarray | None = None,
                      background: np.ndarray | None = None, units: str = "eeuf",
                      min_counts: int = 15, band: float = 0.90) -> dict[str, np.ndarray]:
    """The numbers behind :func:`unfolded_plot`, channels grouped for display.

    Unfolding as XSPEC's ``ufspec``: in a group g of channels, the data unfolded through
    the fitted forward model are N_g × (D_g − B_g) / M_g, with N_g the source model's
    mean photon flux density over the group's nominal energy range, D_g the counts, B_g
    the expected background and M_g the expected source counts *with pileup*; it scatters
    around N_g when the fit is good.  ``data_no_pileup`` unfolds through the unpiled
    counts instead (what a fit ignoring pileup would call the source), and ``piled`` =
    N_g × M_g / M_g^unpiled is the source model as pileup distorts it.  Every model
    quantity is a (5 %, 50 %, 95 %) row triple (for ``band`` = 0.9) over the draws; data
    use the draws' median.  ``units="eeuf"`` multiplies by E_g² (E_g = the group's
    geometric mean energy), giving keV cm⁻² s⁻¹.
    """
    if units not in ("eeuf", "uf"):
        raise ValueError(f"expected units 'eeuf' or 'uf', got {units!r}")
    counts = np.asarray(counts, dtype=float)
    labels = group_for_display(counts, min_counts)
    G = labels.max() + 1
    lo = np.array([e_lo[labels == g].min() for g in range(G)])
    hi = np.array([e_hi[labels == g].max() for g in range(G)])
    width_c = np.asarray(e_hi, float) - np.asarray(e_lo, float)
    width_g = np.maximum(_grouped(width_c, labels), 1e-12)
    n_g = _grouped(np.atleast_2d(source_flux) * width_c, labels) / width_g     # (K, G)
    m_g = np.maximum(_grouped(np.atleast_2d(model), labels), 1e-300)
    d = _grouped(counts, labels)
    b = np.zeros(G) if background is None else _grouped(np.asarray(background, float), labels)
    energy = np.sqrt(lo * hi)
    scale = energy ** 2 if units == "eeuf" else np.ones(G)
    q = [(1 - band) / 2 * 100, 50, (1 + band) / 2 * 100]
    unf = n_g / m_g                                    # photons/cm²/s/keV per count
    k_med = np.median(unf, axis=0)
    out = {"e_lo": lo, "e_hi": hi, "energy": energy, "counts": d, "background": b,
           "data": (d - b) * k_med * scale, "data_err": np.sqrt(np.maximum(d, 1)) * k_med * scale,
           "source": np.percentile(n_g * scale, q, axis=0)}
    m_med = np.median(m_g, axis=0)
    out["ratio"] = (d - b) / m_med
    out["ratio_err"] = np.sqrt(np.maximum(d, 1)) / m_med
    if model_unpiled is not None:
        u_g = np.maximum(_grouped(np.atleast_2d(model_unpiled), labels), 1e-300)
        out["piled"] = np.percentile(n_g * m_g / u_g * scale, q, axis=0)
        k_u = np.median(n_g / u_g, axis=0)
        out["data_no_pileup"] = (d - b) * k_u * scale
        out["data_no_pileup_err"] = np.sqrt(np.maximum(d, 1)) * k_u * scale
    return out


def coverage_plot(levels: np.ndarray, coverage: np.ndarray, names: Sequence[str],
                  path: str | os.PathLike, *, tolerance: float | None = None,
                  tarp: tuple[np.ndarray, np.ndarray] | None = None, title: str | None = None) -> Path:
    """Empirical vs nominal coverage of central credible intervals, one line per parameter."""
    plt = _pyplot()
    ncol = 2 if tarp is not None else 1
    fig, axes = plt.subplots(1, ncol, figsize=(5.2 * ncol, 4.8), squeeze=False)
    ax = axes[0, 0]
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="ideal")
    if tolerance:
        ax.fill_between([0, 1], [-tolerance, 1 - tolerance], [tolerance, 1 + tolerance],
                        color="0.85", label=f"±{tolerance:.2f}")
    for i, n in enumerate(names):
        ax.plot(levels, coverage[:, i], marker="o", ms=3, lw=1.2, label=param_label(n))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("nominal credibility of central interval")
    ax.set_ylabel("empirical coverage")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("marginal coverage (SBC)", fontsize=10)
    if tarp is not None:
        ecp, alpha = tarp
        bx = axes[0, 1]
        bx.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="ideal")
        bx.plot(alpha, ecp, color="C0", lw=1.5, label="TARP")
        bx.set_xlim(0, 1)
        bx.set_ylim(0, 1)
        bx.set_xlabel(r"credibility level $1-\alpha$")
        bx.set_ylabel("expected coverage probability")
        bx.set_title("joint coverage (TARP)", fontsize=10)
        bx.legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def rank_plot(ranks: np.ndarray, n_samples: int, names: Sequence[str], path: str | os.PathLike,
              *, bins: int = 20, title: str | None = None) -> Path:
    """SBC rank histograms with the 99 % band expected for uniform ranks."""
    from scipy.stats import binom

    plt = _pyplot()
    P = len(names)
    ncol = min(P, 3)
    nrow = -(-P // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.9 * nrow), squeeze=False)
    n = ranks.shape[0]
    lo, hi = binom.ppf([0.005, 0.995], n, 1.0 / bins)
    for i, name in enumerate(names):
        ax = axes[i // ncol, i % ncol]
        ax.axhspan(lo, hi, color="0.85", label="99% band (uniform)")
        ax.hist(ranks[:, i], bins=bins, range=(0, n_samples), color="C0", alpha=0.8)
        ax.set_xlabel(f"rank of {param_label(name)}", fontsize=8)
        ax.set_ylabel("simulations")
    for j in range(P, nrow * ncol):
        axes[j // ncol, j % ncol].axis("off")
    axes[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def recovery_plot(truths: np.ndarray, means: np.ndarray, names: Sequence[str],
                  path: str | os.PathLike, *, log: Sequence[bool] | None = None,
                  r2: Sequence[float] | None = None) -> Path:
    """Posterior mean against the true value, per parameter."""
    plt = _pyplot()
    P = len(names)
    ncol = min(P, 3)
    nrow = -(-P // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.4 * nrow), squeeze=False)
    for i, name in enumerate(names):
        ax = axes[i // ncol, i % ncol]
        ax.plot(truths[:, i], means[:, i], ".", ms=3, alpha=0.6)
        lim = [min(truths[:, i].min(), means[:, i].min()), max(truths[:, i].max(), means[:, i].max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        if log is not None and log[i]:
            ax.set_xscale("log")
            ax.set_yscale("log")
        lab = param_label(name)
        ax.set_xlabel(f"true {lab}", fontsize=8)
        ax.set_ylabel(f"posterior mean {lab}", fontsize=8)
        if r2 is not None:
            ax.set_title(f"$R^2$ = {r2[i]:.3f}", fontsize=9)
    for j in range(P, nrow * ncol):
        axes[j // ncol, j % ncol].axis("off")
    fig.tight_layout()
    return _save(fig, path)


# -- emulator validation (simxray validate-emulator) -----------------------------------------

def plot_emulator_worst(e_min: np.ndarray, e_max: np.ndarray, mu_true: np.ndarray, mu_emu: np.ndarray,
               info: list[dict], path: str | os.PathLike) -> Path:
    """Exact vs emulated expected counts and their ratio for the worst cases."""
    plt = _pyplot()
    k = len(mu_true)
    fig, axes = plt.subplots(2, k, figsize=(3.6 * k, 5.4), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [2.2, 1], "hspace": 0.06})
    mid = 0.5 * (e_min + e_max)
    for i in range(k):
        ax, rx = axes[0, i], axes[1, i]
        ax.step(mid, mu_true[i], where="mid", color="k", lw=1.0, label="exact simulator")
        ax.step(mid, mu_emu[i], where="mid", color="C1", lw=1.0, ls="--", label="emulator")
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(1e-2, mu_true[i].max() * 1e-4))
        th = info[i]["theta"]
        txt = ", ".join(f"{n.replace('pileup.', '')}={v:.3g}" for n, v in th.items())
        ax.set_title(f"max err {info[i]['max_rel_error']:.1%}, |ΔC| {info[i]['abs_delta_cstat']:.2f}"
                     f"\npileup {info[i]['pileup_fraction']:.0%}", fontsize=8)
        ax.text(0.02, 0.02, txt, transform=ax.transAxes, fontsize=6, va="bottom")
        good = mu_true[i] >= 10
        ratio = np.where(mu_true[i] > 0, mu_emu[i] / np.maximum(mu_true[i], 1e-300) - 1.0, 0.0)
        rx.plot(mid[good], 100 * ratio[good], ".", ms=2, color="C1", label=r"$\mu \geq 10$")
        rx.plot(mid[~good], 100 * ratio[~good], ".", ms=1.5, color="0.6", label=r"$\mu < 10$")
        rx.axhline(0, color="k", lw=0.6)
        rx.set_ylim(-6, 6)
        rx.set_xscale("log")
        rx.set_xlabel("energy [keV]")
        if i == 0:
            ax.set_ylabel("expected counts per channel")
            rx.set_ylabel("emulated / exact − 1 [%]")
            ax.legend(fontsize=7, loc="upper right")
            rx.legend(fontsize=6, loc="lower right")
    fig.suptitle("emulator: worst held-out cases", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.85, bottom=0.1, wspace=0.3)
    return _save(fig, path)


def plot_emulator_errors(mu_emu: np.ndarray, mu_true: np.ndarray, dc: np.ndarray,
                path: str | os.PathLike) -> Path:
    """Histograms of relative errors (channels with >= 10 counts) and of |ΔC-stat|."""
    plt = _pyplot()
    mask = mu_true >= 10
    rel = np.abs(mu_emu - mu_true)[mask] / mu_true[mask]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.hist(np.log10(np.maximum(rel, 1e-7)), bins=60, color="C0")
    for q, ls in ((50, "-"), (99, "--")):
        a.axvline(np.log10(np.percentile(rel, q)), color="k", ls=ls, lw=0.8, label=f"{q}th pct")
    a.axvline(np.log10(0.01), color="C3", lw=0.8, label="1% / 5% goals")
    a.axvline(np.log10(0.05), color="C3", lw=0.8)
    a.set_xlabel(r"$\log_{10}$ |emulated − exact| / exact (channels with $\mu \geq 10$)")
    a.set_ylabel("channels")
    a.legend(fontsize=7)
    b.hist(np.log10(np.maximum(dc, 1e-6)), bins=50, color="C1")
    b.axvline(np.log10(max(dc.mean(), 1e-6)), color="k", lw=0.8, label=f"mean {dc.mean():.3f}")
    b.axvline(0.0, color="C3", lw=0.8, label="goal: mean < 1")
    b.set_xlabel(r"$\log_{10}$ |ΔC-stat| (Poisson data, per spectrum)")
    b.set_ylabel("spectra")
    b.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
