"""``simxray predict SPECTRUM --model EXPR --param K=V ... [--pileup ...] [--out FILE.csv]``.

Expected counts per channel (XSPEC's ``fakeit`` without noise) for a spectrum's
responses and exposure, optionally through the Davis pileup model.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ._common import add_overwrite, add_spectrum_model, reject_ignored

LOG = logging.getLogger("simxray.cli.predict")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="expected counts per channel for a spectrum's responses (fakeit without noise)",
        description="Fold a model through a spectrum's ARF, RMF and exposure (and the Davis/"
                    "jdpileup pileup model with --pileup); writes channel, e_min, e_max, counts "
                    "and prints the total counts and the pileup fraction.")
    add_spectrum_model(p)
    p.add_argument("--pileup", nargs="?", const="", metavar="alpha=..,g0=..,f=..,n=..,ftime=..,fracexp=..,nterms=..",
                   help="apply the Davis (2001) pileup model; unspecified parameters take Sherpa's "
                        "defaults, ftime the spectrum's frame time")
    p.add_argument("--pileup-grid", default=None, metavar="N[:EMAX]",
                   help="pileup kernel grid (default: Sherpa's 4096 bins over 0-15 keV)")
    p.add_argument("--frame-time", type=float, metavar="S", help="frame time in s (default: header TIMEDEL)")
    p.add_argument("--exposure", type=float, metavar="S", help="exposure in s (default: header)")
    p.add_argument("--arf", help="ARF file (default: the spectrum's ANCRFILE)")
    p.add_argument("--rmf", help="RMF file (default: the spectrum's RESPFILE)")
    p.add_argument("--out", metavar="FILE.csv", help="CSV to write (default: standard output)")
    add_overwrite(p, "an existing --out file")
    p.set_defaults(func=run)


def predict(spectrum: str, expr: str, params: dict, pileup: dict | None, *, frame_time=None,
            exposure=None, arf=None, rmf=None, pileup_grid=None):
    """(simulator, counts (C,), pileup fraction, pileup parameters used) for one parameter set."""
    import numpy as np

    from ..datasets import default_spectrum_path
    from ..errors import ParameterError
    from ..instrument.response import Response
    from ..io.ogip import read_pha
    from ..models import Model
    from ..simulator.prior import Prior
    from ..simulator.simulator import Simulator

    model = Model(expr)
    values, _, _ = model.resolve(params)  # validates names and limits
    path = default_spectrum_path() if spectrum == "default" else spectrum
    spec = read_pha(path, frame_time=frame_time, arf=arf, rmf=rmf, background=None,
                    load_responses=True)
    if exposure is not None and not (np.isfinite(exposure) and exposure > 0):
        raise ParameterError(f"expected a positive exposure in s, got {exposure!r}", field="--exposure")
    response = Response.from_spectrum(spec, exposure)
    sim = Simulator(model, Prior([]), response, pileup=pileup is not None, pileup_grid=pileup_grid)
    pp = None
    if pileup is not None:
        from ..instrument.pileup import PileupParams

        pp = dict(pileup)
        keys = {k.lower().split(".", 1)[-1] for k in pp}
        if "ftime" not in keys:
            if spec.frame_time is None:
                raise ParameterError("no frame time in the spectrum header (TIMEDEL); give "
                                     "--frame-time or --pileup ftime=...", path=str(path), field="ftime")
            pp["ftime"] = spec.frame_time
        pp = PileupParams.from_mapping(pp).to_dict()
    mu, frac = sim.forward({k: float(v[0, 0]) for k, v in values.items()}, pp)
    return sim, spec, mu[0], float(frac[0]), pp


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io.outputs import atomic_file, check_output
    from ..models import parse_param_args
    from ..provenance import provenance

    if args.pileup is None:
        reject_ignored(args, "without --pileup", {"--pileup-grid": args.pileup_grid})
    inputs = [args.spectrum, args.arf, args.rmf]
    if args.out:
        check_output(args.out, kind="file", overwrite=args.overwrite, inputs=inputs)
    params = parse_param_args(args.param)
    pile = parse_param_args([args.pileup]) if args.pileup is not None else None
    sim, spec, mu, frac, pp = predict(args.spectrum, args.model, params, pile,
                                      frame_time=args.frame_time, exposure=args.exposure,
                                      arf=args.arf, rmf=args.rmf, pileup_grid=args.pileup_grid)
    r = sim.response
    rows = np.column_stack([r.channel, r.e_min, r.e_max, mu])
    pars = " ".join(f"{k}={v:g}" for k, v in params.items())
    pdesc = "none" if pp is None else ",".join(f"{k}={float(v):g}" for k, v in pp.items())
    prov = provenance(spectrum=str(spec.path), exposure=r.exposure)
    header = (f"simxray predict {spec.path}: model {sim.expression}; {pars}; pileup {pdesc}; "
              f"exposure {r.exposure:g} s; total {mu.sum():.6g} counts; pileup fraction {frac:.6g}\n"
              f"version {prov['simxray_version']} commit {prov['git_commit']}"
              + (f"; tables {', '.join(sim.model.tables())}" if sim.model.tables() else "") + "\n"
              "channel,e_min,e_max,counts")
    fmt = ["%d", "%.6g", "%.6g", "%.10g"]
    summary = (f"total {mu.sum():.6g} counts in {r.n_channels} channels; "
               f"pileup fraction {frac:.4g}" + ("" if pp is None else f" (frame time {pp['ftime']:g} s)"))
    if args.out:
        with atomic_file(args.out, overwrite=args.overwrite, inputs=inputs) as tmp:
            np.savetxt(tmp, rows, delimiter=",", header=header, comments="# ", fmt=fmt)
        print(f"{args.out}: {summary}")
    else:
        np.savetxt(sys.stdout, rows, delimiter=",", header="channel,e_min,e_max,counts", comments="",
                   fmt=fmt)
        LOG.info("%s", summary)
    return 0
