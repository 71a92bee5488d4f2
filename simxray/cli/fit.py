"""``simxray fit SPECTRUM [--model EXPR] [--prior FILE] [--param NAME=SPEC] [--energy LO:HI]
[--pileup ...] [--method auto|npe|emcee|exact|snpe|nested] --out DIR``."""

from __future__ import annotations

import argparse
import logging

from ._common import add_device, add_overwrite, positive, reject_ignored, show_progress

LOG = logging.getLogger("simxray.cli.fit")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit", help="fit a (piled-up) spectrum: posterior, evidence, fluxes, checks, plots",
        description="Posterior of any model expression for any ACIS (or other OGIP) spectrum, "
                    "with Davis pileup (Sherpa's jdpileup), the Poisson likelihood on ungrouped "
                    "channels (W-stat with a background spectrum, else C-stat) and no training "
                    "step: per-observation methods (exact emcee, nested sampling, sequential "
                    "NPE) run for any response; a shipped or trained amortised posterior is "
                    "used only when its response, model, prior and energy range match "
                    "(--method auto says which ran and why). Writes samples.h5, posterior.nc "
                    "(ArviZ), summary.json, corner.png, spectrum.png (counts) and unfolded.png "
                    "(E F_E: data unfolded through response and pileup against the model "
                    "with and without pileup) to --out.")
    p.add_argument("spectrum", help="PHA file (ARF/RMF/background from its header unless given)")
    p.add_argument("--model", metavar="EXPR",
                   help="model expression, XSPEC names (default: tbabs*powerlaw)")
    p.add_argument("--prior", metavar="FILE.toml",
                   help="priors: NAME = spec lines or a campaign file's [model.parameters] "
                        "and [pileup] tables")
    p.add_argument("--param", action="append", default=[], metavar="NAME=SPEC",
                   help="a prior: NAME=VALUE (fixed), NAME=uniform:LO:HI, "
                        "NAME=loguniform:LO:HI, NAME=normal:MU:SIGMA or a TOML table; "
                        "pileup.alpha=... for pileup; repeatable; overrides --prior")
    p.add_argument("--energy", metavar="LO:HI", action="append", default=[],
                   help="noticed energy range in keV (repeatable; default: every channel)")
    p.add_argument("--pileup", default="jdpileup", metavar="SPEC",
                   help="'jdpileup' (default: alpha, f free; ftime from TIMEDEL, fracexp "
                        "from FRACEXPO), 'none', or fixed values such as ftime=3.2,fracexp=1")
    p.add_argument("--stat", choices=("auto", "wstat", "cstat"), default="auto",
                   help="wstat with a background spectrum (default when there is one), "
                        "cstat ignores the background")
    p.add_argument("--method", choices=("auto", "npe", "emcee", "exact", "snpe", "nested"),
                   default="auto",
                   help="auto (default): a matching amortised posterior, else emcee; exact: "
                        "emcee on the simulator; nested: UltraNest with the evidence; snpe: "
                        "sequential NPE for this observation; npe: an amortised posterior")
    p.add_argument("--posterior", metavar="DIR",
                   help="amortised posterior for --method npe/auto (default: shipped ones)")
    p.add_argument("--emulator", metavar="DIR",
                   help="emulator for --method emcee/auto (default: shipped ones)")
    p.add_argument("--samples", type=int, default=10000,
                   help="posterior draws to keep (default %(default)s)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: SPECTRUM_fit beside the spectrum)")
    add_overwrite(p, "an earlier --out folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--ppc-draws", type=int, default=100,
                   help="posterior draws for the predictive check and plot (default "
                        "%(default)s)")
    p.add_argument("--bands", metavar="LO:HI,LO:HI",
                   help="flux bands in keV (default 0.5:2,2:10,0.5:8)")
    p.add_argument("--arf", help="ARF overriding the header's ANCRFILE")
    p.add_argument("--rmf", help="RMF overriding the header's RESPFILE")
    p.add_argument("--background", help="background PHA overriding BACKFILE ('none' for none)")
    p.add_argument("--frame-time", type=float, help="frame time in s overriding TIMEDEL")
    p.add_argument("--force", action="store_true",
                   help="--method npe: use --posterior even if it was trained for another "
                        "setup (results are then unreliable)")
    p.add_argument("--no-plots", action="store_true", help="skip corner.png, spectrum.png and unfolded.png")
    p.add_argument("--log-axes", action="store_true",
                   help="corner plot with log-uniform parameters on log10 axes")
    add_device(p)
    p.add_argument("--walkers", type=int, help="emcee walkers (default: max(32, 4 x parameters))")
    p.add_argument("--max-steps", type=int, default=20000,
                   help="emcee: most steps per walker (default %(default)s)")
    p.add_argument("--n-effective", type=int, default=1000,
                   help="emcee: effective samples to reach (default %(default)s)")
    p.add_argument("--live-points", type=int, default=400,
                   help="nested: live points (default %(default)s)")
    p.set_defaults(func=run)


def parse_energy(items: list[str]) -> list[tuple[float | None, float | None]]:
    """``LO:HI`` strings → (lo, hi) keV pairs (either side may be empty)."""
    from ..errors import ParameterError

    out = []
    for it in items:
        parts = it.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            lo = float(parts[0]) if parts[0].strip() else None
            hi = float(parts[1]) if parts[1].strip() else None
        except ValueError:
            raise ParameterError(f"expected LO:HI in keV, got {it!r}", field="--energy") from None
        if lo is not None and hi is not None and not lo < hi:
            raise ParameterError(f"expected LO < HI, got {it!r}", field="--energy")
        out.append((lo, hi))
    return out


def parse_pileup(text: str):
    """``jdpileup`` / ``none`` / ``ftime=3.2,fracexp=1`` (fixed values or DIST:a:b)."""
    from ..inference.problem import parse_param_spec

    t = (text or "").strip()
    if t.lower() in ("jdpileup", "davis", "on", ""):
        return "jdpileup"
    if t.lower() in ("none", "off"):
        return "none"
    out = {}
    for item in t.split(","):
        k, v = parse_param_spec(item, field="--pileup")
        out[k.removeprefix("pileup.")] = v
    return out


def parse_bands(text: str | None):
    from ..errors import ParameterError

    if not text:
        return None
    bands = []
    for it in text.split(","):
        try:
            lo, hi = (float(v) for v in it.split(":"))
        except ValueError:
            raise ParameterError(f"expected LO:HI keV pairs, got {it!r}", field="--bands") from None
        if not 0 < lo < hi:
            raise ParameterError(f"expected 0 < LO < HI, got {it!r}", field="--bands")
        bands.append((lo, hi))
    return bands


def run(args: argparse.Namespace) -> int:
    from .. import observation as obsmod
    from ..inference.fitting import fit
    from ..inference.problem import parse_param_spec, read_prior_file
    from ..inference.result import format_summary
    from ..io.outputs import check_output, default_output

    positive(args, "samples", "max_steps", "n_effective", "live_points", "walkers")
    if args.method not in ("emcee", "exact", "auto"):
        reject_ignored(args, f"with --method {args.method}",
                       {"--walkers": args.walkers, "--emulator": args.emulator})
    if args.method not in ("npe", "auto"):
        reject_ignored(args, f"with --method {args.method}",
                       {"--posterior": args.posterior, "--force": args.force})
    if args.method not in ("npe", "auto", "snpe") and args.device:
        reject_ignored(args, f"with --method {args.method}", {"--device": args.device})
    energy = parse_energy(args.energy)
    pileup = parse_pileup(args.pileup)
    bands = parse_bands(args.bands)
    prior: dict = {}
    if args.prior:
        prior.update(read_prior_file(args.prior))
    for item in args.param:
        k, v = parse_param_spec(item)
        prior[k] = v
    inputs = [args.spectrum, args.arf, args.rmf, args.background, args.prior]
    out = check_output(args.out or default_output(args.spectrum, "_fit"), kind="dir",
                       overwrite=args.overwrite, inputs=inputs)
    obs = obsmod.Observation.from_pha(args.spectrum, arf=args.arf, rmf=args.rmf,
                                      background=args.background, frame_time=args.frame_time)
    for lo, hi in energy:
        obs.notice(lo, hi)
    res = fit(obs, args.model, prior or None, pileup=pileup, method=args.method,
              statistic=args.stat, n_samples=args.samples, seed=args.seed,
              posterior=args.posterior, emulator=args.emulator, force=args.force,
              ppc_draws=args.ppc_draws, bands=bands, quiet=not show_progress(args),
              device=args.device, n_effective=args.n_effective, max_steps=args.max_steps,
              n_walkers=args.walkers, nested_live_points=args.live_points)
    files = res.save(out, overwrite=args.overwrite, plots=not args.no_plots, inputs=inputs)
    if args.log_axes and not args.no_plots:
        res.plot_corner(out / "corner_log.png", log=True)
    s = res.summary
    print(f"{obs.name}: {s['total_counts']:.0f} counts in {s['energy_range'][0]:.3g}-"
          f"{s['energy_range'][1]:.3g} keV ({s['n_channels']} channels); {s['model']}"
          f"{' + jdpileup' if s['pileup'] else ''}; {s['statistic']}")
    print(f"method: {s['method']} ({s['method_reason']}); {s['n_samples']} samples in "
          f"{s['timing_s']['total']:.1f} s")
    for n in s.get("notes", []):
        print(f"note: {n}")
    print(format_summary(s))
    d = s.get("sampler") or {}
    imp = d.get("importance")
    if imp:
        print(f"exact likelihood: emcee pilot ({d['n_walkers']} walkers x {imp['pilot_steps']} "
              f"steps) + importance sampling: {d['likelihood_spectra']} spectra, effective "
              f"samples {imp['ess']:.0f}, Pareto k {imp['khat']:.2f}")
    elif "autocorr_time_max" in d:
        print(f"emcee ({d['forward_model']}, {d['statistic']}): {d['n_walkers']} walkers x "
              f"{d['steps']} steps, burn-in {d['burn_in']}, max autocorrelation time "
              f"{d['autocorr_time_max']:.1f}, effective samples "
              f"{d['effective_sample_size_min']:.0f} ({d['stop_reason']})")
    if "ncall" in d:
        print(f"UltraNest: {d['ncall']} likelihood calls, {d['seconds']:.1f} s")
    LOG.info("wrote %s", ", ".join(sorted(files.values())))
    return 0
