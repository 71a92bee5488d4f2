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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..inference.fit import fit_spectrum, format_summary

    res = fit_spectrum(args.spectrum, args.posterior, out=args.out, n_samples=args.samples,
                       seed=args.seed, force=args.force, ppc_draws=args.ppc_draws,
                       plots=not args.no_plots, arf=args.arf, rmf=args.rmf,
                       background=args.background, frame_time=args.frame_time, device=args.device,
                       threads=args.threads)
    s = res.summary
    if args.quiet:
        for w in s["warnings"]:
            print(f"simxray fit: warning: {w}", file=sys.stderr)
    else:
        print(f"{s['spectrum']}: {s['total_counts']:.0f} counts in channels "
              f"{s['channels'][0]}-{s['channels'][1]}; {s['n_samples']} posterior samples")
        print(format_summary(s))
        print(f"wrote {', '.join(sorted(res.files.values()))}")
    return 0
