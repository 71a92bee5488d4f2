"""The event simulator's sparse engine (``EventSimConfig.engine="sparse"``, the default)
against the dense whole-image engine it replaces, and the all-rows channel draw against
a per-row count: bit for bit where no random numbers differ (no read noise), in
distribution otherwise, and the island pulse height against its exact distribution."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2_contingency, ttest_ind

from simxray.instrument.eventsim import EventSimConfig, simulate_events
from simxray.instrument.eventsim.simulate import _draw_channels, _rmf_cdf

FIELDS = ("time", "x", "y", "pha_kev", "pi", "energy_ev", "grade", "fltgrade", "npile")


def response(m: int = 300, c: int = 256):
    """A Gaussian-resolution response (M energy bins, C channels; rows sum to 0.95)."""
    edges = np.linspace(0.2, 10.0, m + 1)
    e = 0.5 * (edges[1:] + edges[:-1])
    ch_edges = np.linspace(0.0, 12.0, c + 1)
    ch = 0.5 * (ch_edges[1:] + ch_edges[:-1])
    sig = 0.05 + 0.02 * e
    rmf = np.exp(-0.5 * ((ch[None, :] - e[:, None]) / sig[:, None]) ** 2)
    rmf *= 0.95 / rmf.sum(1, keepdims=True)
    return edges, rmf, (ch_edges[:-1], ch_edges[1:])


def piled_rate(edges: np.ndarray, per_frame: float, frame_time: float = 0.44104) -> np.ndarray:
    """A Gamma = 1.7 power law with ``per_frame`` photons per frame in all."""
    e = 0.5 * (edges[1:] + edges[:-1])
    r = e ** -1.7 * np.diff(edges)
    return r * per_frame / frame_time / r.sum()


def reference_draw_channels(pha_kev, edges, cdf, rng) -> np.ndarray:
    """The per-row count of the dense engine's era: channels below u in the row."""
    m = np.searchsorted(edges, pha_kev, side="right") - 1
    out = np.full(pha_kev.size, -1, dtype=np.int64)
    idx = np.flatnonzero((m >= 0) & (m < cdf.shape[0]))
    u = rng.random(idx.size).astype(np.float32)
    ch = (cdf[m[idx]] < u[:, None]).sum(axis=1)
    ch[ch >= cdf.shape[1]] = -1
    out[idx] = ch
    return out


def test_channel_draw_equals_the_per_row_count():
    """Same uniform draws, same channels, including rows with zero response, partial
    totals (photons lost) and energies outside the response."""
    edges, rmf, _ = response(120, 90)
    rmf[10] = 0.0
    rmf[20:40] *= 0.3
    cdf = _rmf_cdf(rmf)
    pha = np.random.default_rng(0).uniform(0.0, 11.0, 50000)
    got = _draw_channels(pha, edges, cdf, np.random.default_rng(1))
    want = reference_draw_channels(pha, edges, cdf, np.random.default_rng(1))
    np.testing.assert_array_equal(got, want)
    assert (got == -1).mean() > 0.05 and (got >= 0).mean() > 0.5


@pytest.mark.parametrize("psf,dither,slope,pha_sum", [
    ("chandra", 8.0, 0.0, "island"), ("chandra", 0.0, 0.05, "asca"),
    ("gaussian", 8.0, 0.0, "asca"), ("king", 0.0, 0.0, "island"), ("delta", 8.0, 0.0, "island")])
def test_sparse_engine_is_bit_identical_without_read_noise(psf, dither, slope, pha_sum):
    """Without read noise neither engine draws random numbers of its own: every event
    column must agree exactly (2 photons per frame, strong pileup, wing photons too)."""
    edges, rmf, che = response()
    rate = piled_rate(edges, 2.0)
    out = {}
    for engine in ("sparse", "dense"):
        cfg = EventSimConfig(frame_time=0.44104, read_noise_kev=0.0, psf=psf,
                             dither_amplitude_arcsec=dither, cloud_sigma_slope_px_per_kev=slope,
                             pha_sum=pha_sum, engine=engine)
        out[engine] = simulate_events(rate, edges, rmf, 800.0, channel_energies=che,
                                      config=cfg, seed=3, channel_offset=1)
    a, b = out["sparse"], out["dense"]
    assert a.pi.size > 1000 and (psf == "delta" or a.pileup_fraction() > 0.1)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def _summary(ev) -> dict:
    return {"events_per_frame": ev.pi.size / ev.n_frames, "kept": ev.kept_fraction(),
            "pileup": ev.pileup_fraction(), "good": ev.good.mean(),
            "mean_pha": ev.pha_kev.mean()}


def test_sparse_engine_matches_dense_in_distribution():
    """With read noise the engines use different random numbers: 16 seeds each of a
    piled spectrum (1.5 photons per frame, Chandra PSF, dither), per-seed statistics
    compared by Welch's t-test, pooled multiplicity, grade and channel spectra by
    chi-square two-sample tests."""
    edges, rmf, _ = response()
    rate = piled_rate(edges, 1.5)
    per_seed = {e: [] for e in ("sparse", "dense")}
    pooled = {e: {"npile": [], "grade": [], "pi": []} for e in ("sparse", "dense")}
    for engine in ("sparse", "dense"):
        cfg = EventSimConfig(frame_time=0.44104, engine=engine)
        for seed in range(16):
            ev = simulate_events(rate, edges, rmf, 600.0, config=cfg, seed=1000 + seed)
            per_seed[engine].append(_summary(ev))
            pooled[engine]["npile"].append(np.minimum(ev.npile, 4))
            pooled[engine]["grade"].append(ev.grade)
            pooled[engine]["pi"].append(ev.pi[ev.good])
    for key in per_seed["sparse"][0]:
        a = [s[key] for s in per_seed["sparse"]]
        b = [s[key] for s in per_seed["dense"]]
        assert ttest_ind(a, b, equal_var=False).pvalue > 1e-3, key
    assert np.mean([s["pileup"] for s in per_seed["sparse"]]) > 0.2
    for key, n_bins in (("npile", 5), ("grade", 8), ("pi", 256)):
        h = np.array([np.bincount(np.concatenate(pooled[e][key]), minlength=n_bins)[:n_bins]
                      for e in ("sparse", "dense")])
        # merge sparse bins from the top until every merged bin holds >= 20 counts
        keep, acc = [], np.zeros(2)
        for col in h.T:
            acc = acc + col
            if acc.min() >= 20:
                keep.append(acc)
                acc = np.zeros(2)
        if keep and acc.sum():
            keep[-1] = keep[-1] + acc
        table = np.array(keep).T
        assert table.shape[1] >= 4, key
        assert chi2_contingency(table)[1] > 1e-3, key


def test_single_photon_pulse_height_carries_nine_pixels_of_read_noise():
    """A monochromatic 1.5 keV line at 0.02 photons per frame: an unpiled island's pulse
    height (whole 3x3) is E plus nine independent read-noise values, N(E, 3 sigma),
    although most of the nine pixels hold a negligible part of the 0.1 px charge cloud
    (the sparse engine must give every island pixel its noise, not only the charged
    ones).  sigma = 0.02 keV makes the noise term dominate."""
    edges = np.array([0.2, 1.4995, 1.5005, 10.0])
    rmf = np.eye(3)
    rate = np.array([0.0, 0.02 / 0.44104, 0.0])
    cfg = EventSimConfig(frame_time=0.44104, read_noise_kev=0.02, psf="gaussian")
    ev = simulate_events(rate, edges, rmf, 40000.0, config=cfg, seed=5)
    single = ev.pha_kev[ev.npile == 1]
    assert single.size > 1500
    se = 0.06 / np.sqrt(single.size)
    assert abs(single.mean() - 1.5) < 4 * se
    assert abs(single.std() - 0.06) < 4 * 0.06 / np.sqrt(2 * single.size)


def test_ties_give_one_event_with_the_dense_engines_rule():
    """Clouds centred exactly on pixel edges and corners split their charge into equal
    halves or quarters: the tie rule must give one island per photon, centred on the
    same pixel as in the dense engine (no read noise)."""
    from simxray.instrument.eventsim.simulate import _process_chunk, _process_chunk_sparse

    cfg = EventSimConfig(read_noise_kev=0.0)
    G, k = cfg.grid_px, np.arange(-1, 2)
    px = np.array([16.0, 16.5, 16.0, 10.0, 20.0])      # edge in x, centre, corner, ...
    py = np.array([16.5, 16.0, 16.0, 10.0, 21.0])
    energy = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    frames = np.arange(5)
    out = {}
    for name, fn in (("sparse", _process_chunk_sparse), ("dense", _process_chunk)):
        out[name] = fn(frames, frames, px, py, energy, cfg, np.random.default_rng(0), k, G)
    for key in ("frame", "x", "y", "pha", "flt", "npile"):
        np.testing.assert_array_equal(out["sparse"][key], out["dense"][key], err_msg=key)
    np.testing.assert_array_equal(out["sparse"]["frame"], frames)      # one event per photon
    np.testing.assert_allclose(out["sparse"]["pha"], energy)
