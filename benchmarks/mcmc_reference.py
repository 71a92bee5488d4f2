"""Save (or compare) sample_emcee outputs over a set of configurations: the emcee-driver
refactor must give the same samples bit for bit for the same seed.

    python benchmarks/mcmc_reference.py save FILE.npz
    python benchmarks/mcmc_reference.py check FILE.npz
"""
from __future__ import annotations

import sys
import warnings

import numpy as np

from simxray.inference.mcmc import sample_emcee
from simxray.simulator.prior import Dist, Prior


class Linear:
    def __init__(self, t, f, names):
        self.t, self.f, self.names = t, f, names
        self.channels = [1, t.size]

    def expected(self, theta):
        th = np.atleast_2d(theta)
        return th[:, :1] * self.t + th[:, 1:2] * self.f


class Biased(Linear):
    def expected(self, theta, on_range="error"):
        th = np.atleast_2d(theta)
        mu = super().expected(th)
        tilt = np.linspace(-1.0, 1.0, mu.shape[1])
        return mu * np.exp(0.08 + 0.03 * tilt * (th[:, :1] - 1.0) + 0.02 * (th[:, 1:2] - 2.0) / 2)


class Square:
    names = ["a", "b"]
    channels = [1, 30]

    def __init__(self):
        self.t = np.linspace(1.0, 3.0, 30)

    def expected(self, theta):
        th = np.atleast_2d(theta)
        return th[:, :1] ** 2 * self.t + th[:, 1:2]


def runs() -> dict[str, object]:
    rng = np.random.default_rng(5)
    e = np.linspace(1, 8, 60)
    exact = Linear(20 * e ** -1.5, np.full(60, 2.0), ["a", "b"])
    emu = Biased(exact.t, exact.f, ["a", "b"])
    x = rng.poisson(exact.expected(np.array([1.0, 2.0]))[0])
    bkg = rng.poisson(np.full(60, 3.0)).astype(float)
    prior = Prior([Dist("a", "loguniform", low=0.2, high=5.0), Dist("b", "uniform", low=0.0, high=6.0)])
    kw = dict(prior=prior, n_samples=600, n_effective=300, max_steps=1500, quiet=True)
    sq_prior = Prior([Dist("a", "uniform", low=-3.0, high=3.0), Dist("b", "uniform", low=0.0, high=3.0)])
    xs = np.random.default_rng(1).poisson(Square().expected(np.array([1.5, 1.0]))[0])
    return {
        "plain": lambda: sample_emcee(x, simulator=exact, seed=11, keep_chain=True, **kw),
        "emulator": lambda: sample_emcee(x, emulator=emu, seed=3, **kw),
        "anchor": lambda: sample_emcee(x, emulator=emu, anchor=exact, seed=2, **kw),
        "importance": lambda: sample_emcee(x, simulator=exact, importance=True, seed=4, **kw),
        "init": lambda: sample_emcee(x, simulator=exact, init=np.array([1.1, 2.1]), seed=6,
                                     n_walkers=12, block=100, **kw),
        "wstat": lambda: sample_emcee(x, simulator=exact, background=bkg, background_scale=0.2, seed=8, **kw),
        "bmu": lambda: sample_emcee(x, simulator=exact, background_mu=np.full(60, 0.5), seed=9, **kw),
        "short": lambda: sample_emcee(x, simulator=exact, seed=0, prior=prior, n_samples=5000,
                                      max_steps=200, quiet=True),
        "modes": lambda: sample_emcee(xs, simulator=Square(), prior=sq_prior, n_samples=500, seed=1,
                                      max_steps=1000, n_effective=200, quiet=True),
    }


def flatten(res) -> dict[str, np.ndarray]:
    out = {"samples": res.samples, "log_prob": res.log_prob}
    if res.chain is not None:
        out["chain"] = res.chain
        out["chain_log_prob"] = res.chain_log_prob
    d = res.diagnostics
    skip = {"seconds", "likelihood_seconds", "seconds_per_likelihood", "seconds_per_1000_effective"}
    import json

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(w) for k, w in v.items() if k not in skip and "seconds" not in k}
        if isinstance(v, list):
            return [clean(w) for w in v]
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, np.generic):
            return v.item()
        return v
    out["diagnostics"] = np.array(json.dumps(clean(d), sort_keys=True, default=str))
    out["warnings"] = np.array(json.dumps(list(d.get("warnings", []))))
    return out


def main() -> int:
    mode, path = sys.argv[1], sys.argv[2]
    got = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in runs().items():
            for k, v in flatten(fn()).items():
                got[f"{name}/{k}"] = v
    if mode == "save":
        np.savez(path, **got)
        print(f"saved {len(got)} arrays to {path}")
        return 0
    ref = np.load(path)
    bad = []
    for k in ref.files:
        a, b = ref[k], got.get(k)
        if b is None:
            bad.append(f"{k}: missing")
        elif a.dtype.kind in "US":
            if str(a) != str(b):
                bad.append(f"{k}: differs\n  ref {str(a)[:400]}\n  got {str(b)[:400]}")
        elif a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            diff = np.nanmax(np.abs(a - b)) if a.shape == b.shape else "shape"
            bad.append(f"{k}: max |diff| {diff}")
    extra = set(got) - set(ref.files)
    print(f"compared {len(ref.files)} arrays; {len(bad)} differ; extra {sorted(extra)}")
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
