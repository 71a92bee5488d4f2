"""``simxray fit SPECTRUM [--posterior DIR] [--samples N] --out DIR``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit", help="fit a spectrum with a trained neural posterior",
        description="Draw posterior samples for a (piled-up) PHA spectrum from an amortised "
                    "posterior (default: the shipped ACIS posterior for the NGC 4258 setup). "
                    "Writes samples.h5, posterior.nc (ArviZ InferenceData), summary.json, "
                    "corner.png and spectrum.png; flags out-of-distribution or misspecified "
                    "data with a posterior-predictive C-stat check.")
    p.add_argument("spectrum", help="PHA file (ARF/RMF/background from its header unless given)")
    p.add_argument("--posterior", help="posterior directory from 'simxray train' "
                                       "(default: simxray/data/posterior_default)")
    p.add_argument("--samples", type=int, default=10000, help="posterior draws (default %(default)s)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--ppc-draws", type=int, default=100,
                   help="posterior draws for the predictive check and plot (default %(default)s)")
    p.add_argument("--arf", help="ARF overriding the header's ANCRFILE")
    p.add_argument("--rmf", help="RMF overriding the header's RESPFILE")
    p.add_argument("--background", help="background PHA overriding BACKFILE ('none' for none)")
    p.add_argument("--frame-time", type=float, help="frame time in s overriding the header")
    p.add_argument("--force", action="store_true",
                   help="fit even if the posterior was trained for another response, exposure, "
                        "frame time or channel count (experts only: results are then unreliable)")
    p.add_argument("--no-plots", action="store_true", help="skip corner.png and spectrum.png")
    p.add_argument("--device", help="torch device (default: cpu)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads while sampling (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="print only warnings")
    p.add_argument("--method", choices=("npe", "emcee"), default="npe",
                   help="npe: the amortised posterior (default); emcee: MCMC with the Poisson "
                        "likelihood on the neural emulator (or --exact: the simulator)")
    p.add_argument("--emulator", help="emulator directory for --method emcee "
                                      "(default: simxray/data/emulator_default)")
    p.add_argument("--exact", action="store_true",
                   help="--method emcee on the exact simulator instead of the emulator (slow)")
    p.add_argument("--no-anchor", action="store_true",
                   help="--method emcee: do not anchor the emulator to the exact simulator around "
                        "the mode (by default 2P + 1 exact spectra correct it to first order)")
    p.add_argument("--walkers", type=int, help="emcee walkers (default: max(32, 4 x parameters))")
    p.add_argument("--max-steps", type=int, default=20000,
                   help="emcee: most steps per walker (default %(default)s)")
    p.add_argument("--n-effective", type=int, default=1000,
                   help="emcee: effective samples to reach before stopping (default %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..errors import SimxrayError
    from ..inference.fit import fit_spectrum, format_summary

    if args.method != "emcee":
        for flag, val in (("--exact", args.exact), ("--emulator", args.emulator),
                          ("--walkers", args.walkers), ("--no-anchor", args.no_anchor)):
            if val:
                raise SimxrayError("only applies to --method emcee", field=flag)
    if args.method == "emcee":
        from ..inference.mcmc import fit_spectrum_emcee

        res = fit_spectrum_emcee(args.spectrum, args.emulator, out=args.out,
                                 n_samples=args.samples, seed=args.seed, exact=args.exact,
                                 force=args.force, ppc_draws=args.ppc_draws,
                                 plots=not args.no_plots, arf=args.arf, rmf=args.rmf,
                                 background=args.background, frame_time=args.frame_time,
                                 n_effective=args.n_effective, max_steps=args.max_steps,
                                 n_walkers=args.walkers, quiet=args.quiet, threads=args.threads,
                                 anchor=not args.no_anchor)
    else:
        res = fit_spectrum(args.spectrum, args.posterior, out=args.out, n_samples=args.samples,
                           seed=args.seed, force=args.force, ppc_draws=args.ppc_draws,
                           plots=not args.no_plots, arf=args.arf, rmf=args.rmf,
                           background=args.background, frame_time=args.frame_time,
                           device=args.device, threads=args.threads)
    s = res.summary
    if args.quiet:
        for w in s["warnings"]:
            print(f"simxray fit: warning: {w}", file=sys.stderr)
    else:
        print(f"{s['spectrum']}: {s['total_counts']:.0f} counts in channels "
              f"{s['channels'][0]}-{s['channels'][1]}; {s['n_samples']} posterior samples")
        print(format_summary(s))
        d = s.get("sampler")
        if d:
            print(f"emcee ({d['forward_model']}, {d['statistic']}): {d['n_walkers']} walkers x "
                  f"{d['steps']} steps, burn-in {d['burn_in']}, max autocorrelation time "
                  f"{d['autocorr_time_max']:.1f}, acceptance {d['acceptance_fraction_mean']:.2f}, "
                  f"effective samples {d['effective_sample_size_min']:.0f} "
                  f"({d['stop_reason']}, {d['seconds']:.1f} s)")
            a = d.get("anchor")
            if a:
                chk = (f"; log L error spread {a['check_dloglike_sd_plain']:.2f} -> "
                       f"{a['check_dloglike_sd_anchored']:.2f} on {a['check_points']} check draws"
                       if "check_points" in a else "")
                print(f"emulator anchored to the simulator ({a['points']} exact spectra at pilot "
                      f"draws): counts corrected by {a['total_correction_at_centre']:+.3%} at the "
                      f"centre{chk}")
        print(f"wrote {', '.join(sorted(res.files.values()))}")
    return 0
