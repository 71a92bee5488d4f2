"""``simxray eventsim SPECTRUM --model EXPR --param K=V ... --events EV.fits --pha PILED.pha``.

Event-level ACIS pileup Monte Carlo (:mod:`simxray.instrument.eventsim`) of a model
through a spectrum's ARF, RMF, exposure and frame time: writes the FITS event list and the
good-grade PHA spectrum (both with provenance) and prints the pileup summary.
"""

from __future__ import annotations

import argparse
import logging

from ._common import add_overwrite

LOG = logging.getLogger("simxray.cli.eventsim")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eventsim", help="simulate a piled-up ACIS event list and spectrum (event-level Monte Carlo)",
        description="Draw photons from a model through a spectrum's ARF, bin them into CCD frames, "
                    "place them with a PSF, grade 3x3 islands (two or more photons in an island "
                    "pile up) and read the pulse heights through the RMF. Writes a FITS event "
                    "list (TIME, X, Y, PI, ENERGY, GRADE, FLTGRADE, NPILE) and a PHA spectrum of "
                    "the good-grade events whose header links the same ARF and RMF.")
    p.add_argument("spectrum", metavar="SPECTRUM",
                   help="PHA file whose header names the ARF/RMF, or 'default' (embedded NGC 4258 ACIS-S)")
    p.add_argument("--model", required=True, metavar="EXPR", help="model expression, e.g. 'tbabs*powerlaw'")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="model parameter (repeatable; NAME=V,NAME=V also accepted)")
    p.add_argument("--events", metavar="EV.fits", help="event list to write")
    p.add_argument("--pha", metavar="PILED.pha", help="good-grade PHA spectrum to write")
    p.add_argument("--exposure", type=float, metavar="S", help="exposure in s (default: header)")
    p.add_argument("--frame-time", type=float, metavar="S", help="frame time in s (default: header TIMEDEL)")
    p.add_argument("--psf", choices=("chandra", "gaussian", "king", "delta", "hrma"), default="chandra",
                   help="PSF model: the on-axis Chandra mirror PSF with energy-dependent encircled energy, "
                        "a 0.36 arcsec Gaussian, one King profile, a point, or the focal-plane HRMA PSF "
                        "as MARX ray-traces it (default %(default)s)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", dest="settings",
                   help="other event-simulator setting (e.g. cloud_sigma_px=0.12, dither_amplitude_arcsec=0, "
                        "grading=marx, marx_alpha=0.5)")
    p.add_argument("--arf", help="ARF file (default: the spectrum's ANCRFILE)")
    p.add_argument("--rmf", help="RMF file (default: the spectrum's RESPFILE)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    add_overwrite(p, "existing --events / --pha files")
    p.set_defaults(func=run)


def event_config(psf: str, frame_time: float, settings: list[str] | None):
    """An :class:`EventSimConfig` from the command-line settings (validated)."""
    from dataclasses import fields

    from ..errors import ParameterError
    from ..instrument.eventsim import EventSimConfig

    kinds = {f.name: f.type for f in fields(EventSimConfig)}
    kw: dict = {"psf": psf, "frame_time": frame_time}
    for item in settings or []:
        for piece in item.split(","):
            if not piece.strip():
                continue
            if "=" not in piece:
                raise ParameterError("expected FIELD=VALUE", field=f"--set {piece}")
            k, v = (s.strip() for s in piece.split("=", 1))
            if k not in kinds or k in ("good_grades",):
                raise ParameterError(f"unknown setting; expected one of "
                                     f"{', '.join(n for n in kinds if n != 'good_grades')}", field=f"--set {k}")
            t = str(kinds[k])
            if "bool" in t:
                if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ParameterError(f"expected true or false, got {v!r}", field=f"--set {k}")
                kw[k] = v.lower() in ("true", "1", "yes")
                continue
            try:
                kw[k] = int(v) if "int" in t else v if "str" in t else float(v)
            except ValueError:
                raise ParameterError(f"expected a number, got {v!r}", field=f"--set {k}") from None
    cfg = EventSimConfig(**kw)
    cfg.validate()
    return cfg


def simulate(spectrum: str, expr: str, params: dict, *, exposure=None, frame_time=None, psf="chandra",
             settings=None, arf=None, rmf=None, seed: int = 0):
    """(events, spectrum, response, config) for one model and parameter set."""
    import numpy as np

    from ..datasets import default_spectrum_path
    from ..errors import ParameterError
    from ..instrument.eventsim import simulate_events
    from ..instrument.response import Response
    from ..io.ogip import read_pha
    from ..models import Model

    model = Model(expr)
    model.resolve(params)  # names and hard limits
    path = default_spectrum_path() if spectrum == "default" else spectrum
    spec = read_pha(path, frame_time=frame_time, arf=arf, rmf=rmf, background="none")
    spec.require_responses(arf=True)
    if exposure is not None and not (np.isfinite(exposure) and exposure > 0):
        raise ParameterError(f"expected a positive exposure in s, got {exposure!r}", field="--exposure")
    if spec.frame_time is None:
        raise ParameterError("no frame time in the spectrum header (TIMEDEL); give --frame-time",
                             path=str(path), field="TIMEDEL")
    resp = Response.from_spectrum(spec, exposure)
    flux = np.atleast_2d(model.evaluate(resp.edges, params))[0]
    rate = flux * resp.specresp
    cfg = event_config(psf, float(spec.frame_time), settings)
    chan_e = (resp.e_min, resp.e_max) if resp.e_min is not None else None
    ev = simulate_events(rate, resp.edges, resp.matrix, resp.exposure, channel_energies=chan_e,
                         config=cfg, seed=seed, channel_offset=resp.offset)
    return ev, spec, resp, cfg


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import OutputError, SimxrayError
    from ..instrument.eventsim.output import write_events
    from ..io.ogip import write_pha
    from ..io.outputs import atomic_file, check_output
    from ..models import parse_param_args
    from ..provenance import provenance

    if not args.events and not args.pha:
        raise SimxrayError("nothing to write; expected --events EV.fits and/or --pha PILED.pha",
                           field="--events")
    inputs = [args.spectrum, args.arf, args.rmf]
    for opt, out in (("--events", args.events), ("--pha", args.pha)):
        if out is not None:
            check_output(out, kind="file", overwrite=args.overwrite, inputs=inputs, field=opt)
    if args.events and args.pha and Path(args.events).resolve() == Path(args.pha).resolve():
        raise OutputError("is also --events; expected two different files", path=args.pha,
                          field="--pha")
    params = parse_param_args(args.param)
    ev, spec, resp, cfg = simulate(args.spectrum, args.model, params, exposure=args.exposure,
                                   frame_time=args.frame_time, psf=args.psf, settings=args.settings,
                                   arf=args.arf, rmf=args.rmf, seed=args.seed)
    info = {"spectrum": str(spec.path), "arf": str(spec.arf.path), "rmf": str(spec.rmf.path),
            "model": args.model, "params": params, "exposure": resp.exposure, "seed": args.seed}
    if args.events:
        with atomic_file(args.events, overwrite=args.overwrite, field="--events") as tmp:
            write_events(tmp, ev, overwrite=True, extra={"inputs": info})
    counts = ev.spectrum(resp.n_channels, offset=resp.offset)
    if args.pha:
        with atomic_file(args.pha, overwrite=args.overwrite, field="--pha") as tmp:
            write_pha(tmp, counts, resp.exposure, respfile=str(Path(spec.rmf.path).resolve()),
                      ancrfile=str(Path(spec.arf.path).resolve()), frame_time=cfg.frame_time,
                      channel=resp.channel, overwrite=True,
                      header={"OBJECT": "simxray eventsim", "CREATOR": "simxray eventsim"},
                      provenance=provenance(command="eventsim", eventsim=cfg.to_dict(), **info))
    if not args.quiet:
        written = " and ".join(str(x) for x in (args.events, args.pha) if x)
        print(f"{written}: {ev.n_photons} photons in {ev.n_frames} frames -> {int(ev.good.sum())} good "
              f"events ({counts.sum():.0f} counts); pileup fraction {ev.pileup_fraction():.4f}, "
              f"{ev.counts_per_frame():.4f} counts/frame, flux loss {ev.loss_fraction():.3f}")
    return 0
