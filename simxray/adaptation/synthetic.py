"""Synthetic pairs with a hidden truth: clean sources from real HETG spectra, piled spectra
from the event-level simulator (the stand-in for reality).

The real 3C 120 first orders (HEG/MEG ±1) fix a reference absorbed power law; synthetic
sources scatter around it with normalisations spanning moderate to heavy pileup for the
ACIS-S imaging response of ``simxray/data``.  Each pair gets Poisson grating spectra through
the real grating responses and an event-simulated piled ACIS spectrum of the same exposure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .forward import FitSpaceModel
from .pairs import GratingArm, Pair, grating_arm, write_grating_pha

ARMS_3C120 = ("heg_-1", "heg_1", "meg_-1", "meg_1")
ABSORBED_POWERLAW = {"expression": "tbabs*powerlaw", "free": ["nH", "PhoIndex", "norm"],
                     "log": ["nH", "norm"]}


def absorbed_powerlaw() -> FitSpaceModel:
    """tbabs*powerlaw with nH and norm fitted in log10."""
    return FitSpaceModel(ABSORBED_POWERLAW["expression"], ABSORBED_POWERLAW["free"],
                       ABSORBED_POWERLAW["log"])


def grating_files(chandra_dir: str | os.PathLike) -> list[Path]:
    """The four 3C 120 first-order PHA files."""
    d = Path(chandra_dir)
    files = [d / f"3c120_{a}.pha.gz" for a in ARMS_3C120]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise ConfigError("file not found; expected the 3C 120 HETG first orders", path=missing[0])
    return files


@dataclass
class SyntheticSetup:
    """Everything needed to draw synthetic pairs."""

    source: FitSpaceModel
    arms: list[GratingArm]             # templates (real 3C 120 responses and counts)
    grating_files: list[Path]
    piled_response: object             # simxray Response (ACIS imaging)
    piled_slice: slice
    frame_time: float
    exposure: float
    eventsim: dict = field(default_factory=dict)
    grating_range: tuple[float, float] = (0.8, 7.0)
    piled_range: tuple[float, float] = (0.5, 8.0)
    piled_files: dict = field(default_factory=dict)

    def rate(self, theta: np.ndarray) -> np.ndarray:
        """Photons/s per response energy bin after the ARF (M,) for one fit-space theta."""
        r = self.piled_response
        return self.source.evaluate(np.atleast_2d(theta), r.edges)[0] * r.specresp

    def simulate_pair(self, theta: np.ndarray, rng: np.random.Generator, name: str) -> Pair:
        """Grating counts (Poisson) and an event-simulated piled spectrum for fit-space theta."""
        from ..instrument.eventsim import EventSimConfig, simulate_events

        th = np.atleast_2d(np.asarray(theta, float))
        arms = []
        for a in self.arms:
            arm = a.with_data(a.counts, self.exposure)
            arm.counts = rng.poisson(arm.fold(self.source.evaluate(th, a.edges))[0]).astype(float)
            arms.append(arm)
        r = self.piled_response
        ev = simulate_events(self.rate(th[0]), r.edges, r.matrix, self.exposure,
                             config=EventSimConfig(**{"frame_time": self.frame_time, **self.eventsim}),
                             seed=rng, channel_offset=0)
        full = ev.spectrum(r.n_channels, offset=0)
        nat = self.source.to_natural(th[0])
        truth = {n: float(v) for n, v in zip(self.source.names, nat, strict=True)}
        truth["pileup_fraction_events"] = ev.pileup_fraction()
        return Pair(name, arms, r, full[self.piled_slice].astype(float), self.piled_slice,
                    self.frame_time, self.exposure, self.grating_range, self.piled_range, truth,
                    {"piled_full": full})


def setup_3c120(chandra_dir: str | os.PathLike, *, exposure: float = 30000.0,
                piled_spectrum: str | os.PathLike | None = None, eventsim: dict | None = None,
                grating_range: tuple[float, float] = (0.8, 7.0),
                piled_range: tuple[float, float] = (0.5, 8.0)) -> SyntheticSetup:
    """3C 120 grating templates and the embedded ACIS-S imaging response."""
    from ..datasets import default_spectrum_path
    from ..instrument.hetg import load_grating_order
    from ..instrument.response import Response
    from ..io.ogip import read_pha

    files = grating_files(chandra_dir)
    arms = [grating_arm(load_grating_order(f), *grating_range) for f in files]
    spath = Path(piled_spectrum) if piled_spectrum else default_spectrum_path()
    spec = read_pha(spath, background="none")
    resp = Response.from_spectrum(spec, exposure)
    sl = resp.channel_slice(*piled_range)
    return SyntheticSetup(absorbed_powerlaw(), arms, files, resp, sl, float(spec.frame_time or 3.24104),
                          float(exposure), dict(eventsim or {}), grating_range, piled_range,
                          {"arf": str(spec.arf.path), "rmf": str(spec.rmf.path)})


def draw_sources(reference: np.ndarray, n: int, rng: np.random.Generator,
                 norm_range: tuple[float, float], scatter: dict[str, float] | None = None,
                 names: tuple[str, ...] = ("nH", "PhoIndex", "norm")) -> np.ndarray:
    """n fit-space sources around ``reference`` (fit space, [log nH, Gamma, log norm]).

    log10 nH scatters by ``scatter['nH']`` dex (default 0.2), Gamma by ``scatter['PhoIndex']``
    (0.15); log10 norm is uniform over ``norm_range`` (natural units).
    """
    s = {"nH": 0.2, "PhoIndex": 0.15, **(scatter or {})}
    ref = np.asarray(reference, float)
    out = np.empty((n, 3))
    out[:, 0] = ref[0] + s["nH"] * rng.standard_normal(n)
    out[:, 1] = ref[1] + s["PhoIndex"] * rng.standard_normal(n)
    out[:, 2] = rng.uniform(np.log10(norm_range[0]), np.log10(norm_range[1]), n)
    return out


def write_pairs(out_dir: str | os.PathLike, setup: SyntheticSetup, pairs: list[Pair], *,
                name: str = "pairs.toml", overwrite: bool = False) -> Path:
    """Write the pairs' grating and piled PHA files and a PAIRS.toml describing them."""
    from astropy.io import fits

    from ..io.ogip import write_pha
    from ..provenance import provenance

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Synthetic HETG/ACIS pairs written by simxray.adaptation.synthetic.write_pairs",
             "[model]", f'expression = "{setup.source.expression}"',
             "free = [" + ", ".join(f'"{n}"' for n in setup.source.names) + "]",
             "log = [" + ", ".join(f'"{n}"' for n, lg in zip(setup.source.names, setup.source.log,
                                                             strict=True) if lg) + "]", "",
             "[defaults]", f"grating_energy_range = [{setup.grating_range[0]}, {setup.grating_range[1]}]",
             f"piled_energy_range = [{setup.piled_range[0]}, {setup.piled_range[1]}]", ""]
    for p in pairs:
        gnames = []
        for arm, tfile in zip(p.arms, setup.grating_files, strict=True):
            with fits.open(tfile) as h:
                full = np.zeros(len(h[1].data["COUNTS"]))
                e_min = 12.398419843320026 / h[1].data["BIN_HI"]
                e_max = 12.398419843320026 / h[1].data["BIN_LO"]
            chan = np.flatnonzero((e_max > setup.grating_range[0]) & (e_min < setup.grating_range[1]))
            full[chan] = arm.counts
            gname = f"{p.name}_{arm.name}.pha"
            write_grating_pha(tfile, full, p.exposure, out / gname, overwrite=overwrite,
                              provenance=provenance(synthetic=p.name, truth=p.truth))
            gnames.append(gname)
        pname = f"{p.name}_acis.pha"
        full = p.files.get("piled_full")
        if full is None:
            full = np.zeros(setup.piled_response.n_channels)
            full[p.piled_slice] = p.piled_counts
        write_pha(out / pname, np.rint(full), p.exposure, respfile=setup.piled_files["rmf"],
                  ancrfile=setup.piled_files["arf"], frame_time=p.frame_time,
                  header={"OBJECT": p.name}, overwrite=overwrite,
                  provenance=provenance(synthetic=p.name, truth=p.truth, eventsim=setup.eventsim))
        lines += ["[[pair]]", f'name = "{p.name}"',
                  "gratings = [" + ", ".join(f'"{g}"' for g in gnames) + "]",
                  f'piled = "{pname}"', f"exposure = {p.exposure}", f"frame_time = {p.frame_time}"]
        if p.truth:
            lines.append("truth = { " + ", ".join(f"{k} = {v!r}" for k, v in p.truth.items()) + " }")
        lines.append("")
    path = out / name
    from ..provenance import atomic_path

    tmp = atomic_path(path)
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path
