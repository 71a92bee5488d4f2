"""Domain adaptation with a hidden truth: plots of the benchmark's before/after figures.

    python notebooks/adaptation.py [--json benchmarks/results/adaptation.json] [--out notebooks]

Reads the JSON written by ``python benchmarks/bench_adaptation.py --json FILE`` (run it
first, ~15-25 min on 2 busy cores; ``--quick`` for a smoke test) and writes

* ``adaptation_recovery.png``  posterior mean (NPE) or ML estimate − truth against the
  event-level pileup fraction, per parameter, for the uncalibrated NPE, the adapted NPE and
  the Davis ML fit;
* ``adaptation_coverage.png``  empirical against nominal coverage of central intervals;
* ``adaptation_calibration.png`` per-pair calibrated alpha0 and eff, and the Davis model's
  pileup fraction against the event simulator's, for the calibration pairs;
* ``adaptation_emcee.png``  the same recovery and coverage for emcee fits with the
  emulators ``simxray adapt`` trains: the Davis emulator, the adapted one with its
  nuisance inputs at the population mean (plug-in) and sampled under the calibrated
  population (marginalised), next to the adapted NPE.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LABELS = {"nH": "log10 nH", "PhoIndex": "Gamma", "norm": "log10 norm"}
SHOW = (("npe_uncalibrated", "NPE, Davis simulator", "tab:red"),
        ("npe_calibrated", "NPE, calibrated Davis", "tab:orange"),
        ("npe_adapted", "NPE, adapted (calibration + correction)", "tab:blue"),
        ("ml_davis", "Davis ML fit (alpha free)", "tab:gray"))
SHOW_EMCEE = (("emcee_davis_emulator", "emcee, Davis emulator", "tab:red"),
              ("emcee_adapted_emulator_plugin", "emcee, adapted emulator, plug-in", "tab:olive"),
              ("emcee_adapted_emulator", "emcee, adapted emulator, marginalised", "tab:green"),
              ("npe_adapted", "NPE, adapted", "tab:blue"))


def coverage_frame(ax, fig_d: dict, name: str) -> None:
    """Nominal-coverage diagonal, its ± 0.1 band, labels and legend of a coverage panel."""
    lv = np.array(fig_d["methods"]["npe_adapted"]["levels"])
    ax.fill_between(lv, lv - 0.1, lv + 0.1, color="k", alpha=0.1, label="nominal ± 0.1")
    ax.plot(lv, lv, "k--", lw=0.8)
    ax.set_xlabel("nominal credibility")
    ax.set_ylabel(f"empirical coverage, {LABELS.get(name, name)}")
    ax.legend(fontsize=6)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "adaptation.json"))
    ap.add_argument("--out", default=str(ROOT / "notebooks"))
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simxray.errors import FileFormatError
    from simxray.provenance import atomic_path

    try:
        doc = json.loads(Path(args.json).read_text())
        fig_d = doc["figures"]
        names = fig_d["reference_3c120"]["names"]
        truth = np.asarray(fig_d["arrays"]["truth"])
        frac = np.asarray(fig_d["arrays"]["pileup_fraction_events"])
        est = {k: np.asarray(v) for k, v in fig_d["arrays"]["estimates"].items()}
    except (OSError, ValueError, KeyError) as exc:
        print(f"adaptation.py: error: {FileFormatError(f'not a bench_adaptation JSON ({exc})', path=args.json)}",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save(fig, name):
        path = out / name
        tmp = atomic_path(path)
        fig.savefig(tmp, dpi=110, format="png")
        tmp.replace(path)
        plt.close(fig)
        print(f"wrote {path}")

    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8))
    for j, n in enumerate(names):
        ax = axes[j]
        for key, lab, col in SHOW:
            if key in est:
                b = fig_d["methods"][key][n]["bias"]
                ax.scatter(frac, est[key][:, j] - truth[:, j], s=9, color=col, alpha=0.6,
                           label=f"{lab}: bias {b:+.3f}")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("pileup fraction (event simulator)")
        ax.set_ylabel(f"estimate − truth, {LABELS.get(n, n)}")
        ax.legend(fontsize=6)
    fig.suptitle(f"held-out pairs: bias ratio adapted/uncalibrated = "
                 f"{fig_d['bias_ratio_adapted_over_uncalibrated']:.2f}", fontsize=10)
    fig.tight_layout()
    save(fig, "adaptation_recovery.png")

    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8))
    for j, n in enumerate(names):
        ax = axes[j]
        for key, lab, col in SHOW:
            m = fig_d["methods"].get(key)
            if m:
                ax.plot(m["levels"], m[n]["coverage"], "o-", color=col, label=lab, ms=4)
        coverage_frame(ax, fig_d, n)
    fig.tight_layout()
    save(fig, "adaptation_coverage.png")

    cal = fig_d["calibration"]["pairs"]
    pf_ev = np.array([p["pileup_fraction_events"] for p in cal])
    pf_mod = np.array([p["pileup_fraction_model"] for p in cal])
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.6))
    axes[0].scatter(pf_ev, [p["phi_shrunk"]["alpha0"] for p in cal], s=14)
    axes[0].set_ylabel("alpha0 (shrunken, per pair)")
    axes[1].scatter(pf_ev, [p["phi_shrunk"]["eff"] for p in cal], s=14)
    axes[1].set_ylabel("eff (shrunken, per pair)")
    for ax in axes[:2]:
        ax.set_xlabel("pileup fraction (event simulator)")
    axes[2].scatter(pf_ev, pf_mod, s=14)
    axes[2].plot([0, 1], [0, 1], "k--", lw=0.8)
    axes[2].set_xlabel("pileup fraction (event simulator)")
    axes[2].set_ylabel("pileup fraction (calibrated Davis)")
    pop = fig_d["calibration"]["population"]["phi_at_mean"]
    fig.suptitle("population: " + ", ".join(f"{k} = {v:.3f}" for k, v in pop.items()), fontsize=10)
    fig.tight_layout()
    save(fig, "adaptation_calibration.png")

    emu = fig_d.get("emulators")
    if emu:
        n_e = int(emu.get("n_test_pairs_emcee", len(truth)))
        fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 7.2))
        for j, n in enumerate(names):
            ax, axc = axes[0, j], axes[1, j]
            for key, lab, col in SHOW_EMCEE:
                if key not in est:
                    continue
                e = est[key][:n_e]
                b = fig_d["methods"][key][n]["bias"]
                ax.scatter(frac[:n_e], e[:, j] - truth[:n_e, j], s=9, color=col, alpha=0.6,
                           label=f"{lab}: bias {b:+.3f}")
                m = fig_d["methods"][key]
                axc.plot(m["levels"], m[n]["coverage"], "o-", color=col, label=lab, ms=4)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xlabel("pileup fraction (event simulator)")
            ax.set_ylabel(f"estimate − truth, {LABELS.get(n, n)}")
            ax.legend(fontsize=6)
            coverage_frame(axc, fig_d, n)
        r = emu["bias_reduction"]
        fig.suptitle(f"emcee on {n_e} held-out pairs: scaled RMS bias {r['scaled_rms_bias_before']:.3f} "
                     f"(Davis emulator) -> {r['scaled_rms_bias_after']:.3f} (adapted, marginalised)",
                     fontsize=10)
        fig.tight_layout()
        save(fig, "adaptation_emcee.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
