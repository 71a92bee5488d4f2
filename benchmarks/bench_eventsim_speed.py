"""Benchmark: speed of the event-level simulator on bright, piled-up relxill spectra.

The spectra are the first ``--n`` test draws of the pileup-bias benchmark's campaign
(benchmarks/relxill_pileup_bias_campaign.toml: ACIS-S3 1/8 subarray, 0.44104 s frames,
100 ks), simulated with that benchmark's pinned simulator configuration
(``EVENTSIM``), each one three ways on one thread, interleaved:

* ``original``: the dense engine (a G x G image per frame) with the per-row channel draw
  of the code before the sparse engine (reimplemented here, same random numbers);
* ``dense``: the dense engine with the all-rows ``searchsorted`` channel draw;
* ``sparse``: the default engine (touched pixels only).

Photons per wall second for each, and their ratios, go to
benchmarks/results/eventsim_speed.json::

    nice -n 19 .venv/bin/python benchmarks/bench_eventsim_speed.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def per_row_draw_channels(pha_kev, edges, cdf, rng, block: int = 20000) -> np.ndarray:
    """The channel draw before the sparse engine: a per-row count in blocks."""
    m = np.searchsorted(edges, pha_kev, side="right") - 1
    out = np.full(pha_kev.size, -1, dtype=np.int64)
    idx = np.flatnonzero((m >= 0) & (m < cdf.shape[0]))
    u = rng.random(idx.size).astype(np.float32)
    for s in range(0, idx.size, block):
        sl = idx[s:s + block]
        ch = (cdf[m[sl]] < u[s:s + block, None]).sum(axis=1)
        ch[ch >= cdf.shape[1]] = -1
        out[sl] = ch
    return out


def main(argv=None) -> int:
    import dataclasses

    from benchmarks import bench_relxill_pileup_bias as bias
    from simxray.instrument.eventsim import simulate as simmod
    from simxray.io.modeldir import write_json
    from simxray.provenance import provenance, sha256

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8, help="spectra (first test draws)")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "eventsim_speed.json")
    a = ap.parse_args(argv)
    cfg, sim_d, _ = bias.setup(bias.BRIGHT)
    rng = np.random.default_rng(a.seed + 3)          # the bias benchmark's test draws
    theta = sim_d.prior.sample(max(a.n, 1), rng)[:a.n]
    resp = sim_d.response
    mp, _ = sim_d.split(theta)
    flux = np.atleast_2d(sim_d.model.evaluate(resp.edges, mp))
    base = bias.eventsim_config(sim_d)
    rows = []
    new_draw = simmod._draw_channels
    for i in range(a.n):
        rate = flux[i] * resp.specresp
        row = {"index": i}
        for way in ("original", "dense", "sparse"):
            ecfg = dataclasses.replace(base, engine="sparse" if way == "sparse" else "dense")
            simmod._draw_channels = per_row_draw_channels if way == "original" else new_draw
            try:
                t0 = time.perf_counter()
                ev = simmod.simulate_events(rate, resp.edges, resp.matrix, resp.exposure,
                                            config=ecfg, seed=np.random.default_rng([a.seed, i]),
                                            channel_offset=resp.offset)
                dt = time.perf_counter() - t0
            finally:
                simmod._draw_channels = new_draw
            row[way] = {"seconds": round(dt, 3), "photons": ev.n_photons,
                        "photons_per_s": round(ev.n_photons / dt),
                        "pileup_fraction": round(ev.pileup_fraction(), 4),
                        "good_events": int(ev.good.sum())}
        row["speedup_vs_original"] = round(row["original"]["seconds"] / row["sparse"]["seconds"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    tot = {w: sum(r[w]["seconds"] for r in rows) for w in ("original", "dense", "sparse")}
    photons = sum(r["sparse"]["photons"] for r in rows)
    result = {
        "provenance": provenance(command=" ".join(sys.argv), seed=a.seed,
                                 config_sha256=sha256(bias.BRIGHT),
                                 eventsim=json.loads(json.dumps(base.to_dict()))),
        "what": __doc__.split("\n\n")[0],
        "photons": photons,
        "photons_per_s": {w: round(photons / t) for w, t in tot.items()},
        "speedup_sparse_vs_original": round(tot["original"] / tot["sparse"], 2),
        "speedup_sparse_vs_dense": round(tot["dense"] / tot["sparse"], 2),
        "note": "one thread, nice 19, on a shared 2-core machine; the ratios are from the same "
                "spectra simulated back to back",
        "spectra": rows,
    }
    write_json(a.json, result)
    print(json.dumps({k: result[k] for k in ("photons", "photons_per_s",
                                             "speedup_sparse_vs_original",
                                             "speedup_sparse_vs_dense")}))
    return 0


def run(quick: bool = False) -> dict:
    """``benchmarks/run.py`` entry: 2 spectra (quick) or 8; the JSON goes to a temporary
    file (the committed one is written by running this script directly)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eventsim_speed.json"
        main(["--n", "2" if quick else "8", "--json", str(out)])
        res = json.loads(out.read_text())
    return {"photons": res["photons"],
            **{f"photons_per_s_{k}": v for k, v in res["photons_per_s"].items()},
            "ratio": res["speedup_sparse_vs_original"]}


if __name__ == "__main__":
    raise SystemExit(main())
