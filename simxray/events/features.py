"""PPAD latents as a shared feature extractor.

* :func:`decoded_summaries`: quantities computed from z alone through the frozen decoder
  (time-averaged band fractions and the CSC hardness ratios of the decoded rates).
* :func:`feature_matrix`: z, optionally with those decoded summaries (functions of z only)
  and the log of the decoded model's expected counts (the encoder's normalisation N); no
  other summaries of the events are added.
* :func:`fit_regressor` / :func:`fit_classifier`: downstream models (scikit-learn
  histogram gradient boosting) with held-out scores (:func:`regression_scores`,
  :func:`classification_scores`).
* :class:`AnomalyScorer`: nearest-neighbour anomaly score against a reference set of latents.
* :class:`PPADEmbedding`: an ``sbi`` embedding network: the frozen PPAD encoder (event lists
  → z, done once per simulation with :meth:`PPADEmbedding.encode`) followed by a small
  trainable MLP on z.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .eventfile import EventList
from .ppad import PPAD

HARDNESS_KEYS = ("hard_hm", "hard_ms", "hard_hs")


def _runs(mask: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Number of runs of True per row and their centres (index units)."""
    d = np.diff(np.concatenate([np.zeros((len(mask), 1), np.int8), mask.astype(np.int8),
                                np.zeros((len(mask), 1), np.int8)], axis=1), axis=1)
    centres = []
    for row in d:
        st, en = np.flatnonzero(row == 1), np.flatnonzero(row == -1)
        centres.append(0.5 * (st + en - 1))
    return np.array([c.size for c in centres], np.float64), centres


def _shape_features(lc: np.ndarray, n_pad: int) -> np.ndarray:
    """Time-domain and Fourier descriptors of normalised light curves lc (B, T), mean 1 (20 columns)."""
    B, T = lc.shape
    med = np.median(lc, axis=1, keepdims=True)
    q = np.quantile(lc, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0], axis=1).T                         # 7
    x = lc - 1.0
    sd = x.std(1) + 1e-9
    skew = (x ** 3).mean(1) / sd ** 3
    # periodogram of the mean-subtracted curve, zero-padded (resolution T/n_pad cycles per span)
    pw = np.abs(np.fft.rfft(x, n=n_pad, axis=1)) ** 2 / T
    fr = np.arange(pw.shape[1]) / n_pad * T
    ok = (fr >= 1.0) & (fr <= 0.45 * T)
    pk = np.where(ok, pw, -np.inf).argmax(1)
    p_pk = pw[np.arange(B), pk]
    f_pk = fr[pk]
    total = pw[:, ok].sum(1) + 1e-12
    near = np.abs(fr[None, :] - f_pk[:, None]) <= 0.75
    coh = (pw * (near & ok)).sum(1) / total                    # fraction of variance in the peak
    h2 = np.clip(np.rint(2 * f_pk * n_pad / T).astype(int), 0, pw.shape[1] - 1)
    harm = np.log10((pw[np.arange(B), h2] + 1e-9) / (p_pk + 1e-9))
    # autocorrelation (zero-padded, so not circular): highest value at lags 0.03-0.5 of the span
    ac = np.fft.irfft(np.abs(np.fft.rfft(x, n=2 * T, axis=1)) ** 2, axis=1)[:, :T]
    ac = ac / (ac[:, :1] + 1e-12)
    lo = max(2, int(0.03 * T))
    acmax = ac[:, lo:T // 2].max(1)
    aclag = (ac[:, lo:T // 2].argmax(1) + lo) / T
    # dips and peaks: runs below 0.5 / above 1.5 times the median
    n_dip, cen = _runs(lc < 0.5 * med)
    reg = np.array([np.std(np.diff(c)) / np.mean(np.diff(c)) if c.size >= 3 else (0.5 if c.size == 2 else 1.0)
                    for c in cen])
    n_hi, _ = _runs(lc > 1.5 * med)
    below = (lc < 0.5 * med).mean(1)
    return np.column_stack([q, np.log10(sd), skew, np.log10(p_pk + 1e-9), f_pk, coh, harm, acmax, aclag,
                            n_dip, reg, n_hi, below, np.log10((lc.max(1) + 1e-9) / (med[:, 0] + 1e-9))])


def decoded_summaries(model: PPAD, z: np.ndarray, n_tau: int = 256) -> np.ndarray:
    """Descriptors computed from z alone through the frozen decoder, on τ ∈ [0, 1]:

    * time-averaged band fractions (n_bands) and CSC hardness ratios hm, ms, hs (3);
    * shape of the total decoded light curve L(τ)/mean (20, :func:`_shape_features`):
      quantiles 0, 5, 25, 50, 75, 95, 100 %, log standard deviation, skewness; the highest
      periodogram peak at ≥ 1 cycle per span (log power, frequency, fraction of the variance
      within ±0.75 cycles of it, log power ratio of its second harmonic); the highest
      autocorrelation at lags 0.03-0.5 and that lag; runs below 0.5× the median (number,
      irregularity of their spacing: std/mean of the intervals), runs above 1.5× the median,
      fraction of time below 0.5× the median, log max/median;
    * the same shape descriptors of the soft (0.5-1.2 keV) and hard (2-7 keV) decoded light
      curves (2 × 20);
    * time variability of the spectrum: standard deviation over τ of the decoded hard_hs and
      hard_ms (2).

    Shape (S, n_bands + 65).
    """
    tau = (np.arange(n_tau) + 0.5) / n_tau
    out = []
    edges = np.asarray(model.cfg.band_edges)
    mids = 0.5 * (edges[:-1] + edges[1:])
    s_sel, m_sel, h_sel = (mids >= 0.5) & (mids < 1.2), (mids >= 1.2) & (mids < 2.0), (mids >= 2.0) & (mids < 7.0)
    for start in range(0, len(z), 512):
        rho = model.rates(z[start:start + 512], tau).astype(np.float64)      # (B, T, nb)
        mean_b = rho.mean(1)
        frac = mean_b / mean_b.sum(1, keepdims=True)
        s, m, h = frac[:, s_sel].sum(1), frac[:, m_sel].sum(1), frac[:, h_sel].sum(1)
        hr = np.column_stack([(h - m) / (h + m), (m - s) / (m + s), (h - s) / (h + s)])
        st, mt, ht = (rho[:, :, sel].sum(2) for sel in (s_sel, m_sel, h_sel))
        shapes = [_shape_features(c / (c.mean(1, keepdims=True) + 1e-12), 4 * n_tau)
                  for c in (rho.sum(2), st, ht)]
        hs_t, ms_t = (ht - st) / (ht + st + 1e-12), (mt - st) / (mt + st + 1e-12)
        out.append(np.column_stack([frac, hr, *shapes, hs_t.std(1), ms_t.std(1)]))
    n_col = model.cfg.n_bands + 65
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, n_col), np.float32)


def feature_matrix(model: PPAD, z: np.ndarray, *, decoded: bool = True,
                   n_events: np.ndarray | None = None) -> np.ndarray:
    """Features for downstream models: z, plus :func:`decoded_summaries` when ``decoded``, plus
    (when ``n_events`` is given, e.g. ``EncodeResult.n_events``) log10 of the counts the decoded
    rate predicts over the GTIs, scale·E·∫ρ = N: the encoding's normalisation, which sets how
    significant a decoded variation is."""
    z = np.asarray(z, np.float32)
    cols = [z, decoded_summaries(model, z)] if decoded else [z]
    if n_events is not None:
        cols.append(np.log10(np.maximum(np.asarray(n_events, np.float64), 1.0))[:, None].astype(np.float32))
    return np.column_stack(cols) if len(cols) > 1 else z


def fit_regressor(X: np.ndarray, y: np.ndarray, seed: int = 0):
    """Histogram gradient-boosting regressor (scikit-learn) fitted to (X, y)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=300, learning_rate=0.08, random_state=seed).fit(X, y)


def fit_classifier(X: np.ndarray, y: np.ndarray, seed: int = 0):
    """Histogram gradient-boosting classifier (scikit-learn) fitted to (X, y)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=300, learning_rate=0.08, random_state=seed).fit(X, y)


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R², RMSE and MAE."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    res = y_true - y_pred
    ss = np.sum((y_true - y_true.mean()) ** 2)
    return {"r2": float(1 - np.sum(res ** 2) / ss), "rmse": float(np.sqrt(np.mean(res ** 2))),
            "mae": float(np.mean(np.abs(res)))}


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str]) -> dict:
    """Accuracy, macro F1, F1 per class and the confusion matrix (rows: true)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(names)
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    f1 = {}
    for i, name in enumerate(names):
        tp, fp, fn = cm[i, i], cm[:, i].sum() - cm[i, i], cm[i, :].sum() - cm[i, i]
        f1[name] = float(2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) else float("nan")
    return {"accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "macro_f1": float(np.nanmean(list(f1.values()))),
            "f1": f1, "confusion": cm.tolist(), "classes": list(names)}


class AnomalyScorer:
    """k-nearest-neighbour anomaly score in standardised latent space.

    ``score`` = mean Euclidean distance to the k nearest reference latents; ``percentile`` =
    fraction of reference latents whose own (leave-one-out) score is lower, so 0.99 means
    stranger than 99 % of the reference population.
    """

    def __init__(self, reference: np.ndarray, k: int = 10):
        ref = np.asarray(reference, np.float64)
        if ref.ndim != 2 or len(ref) <= k:
            raise ValueError(f"reference must be (S > {k}, d), got {ref.shape}")
        self.k = k
        self.mean, self.std = ref.mean(0), ref.std(0) + 1e-8
        self.ref = (ref - self.mean) / self.std
        self.ref_scores = np.sort(self._knn(self.ref, loo=True))

    def _knn(self, x: np.ndarray, loo: bool = False) -> np.ndarray:
        out = np.empty(len(x))
        r2 = (self.ref ** 2).sum(1)
        for s in range(0, len(x), 1024):
            xb = x[s:s + 1024]
            d2 = np.maximum((xb ** 2).sum(1)[:, None] + r2[None] - 2 * xb @ self.ref.T, 0.0)
            kk = self.k + 1 if loo else self.k
            part = np.sqrt(np.partition(d2, kk - 1, axis=1)[:, :kk])
            part.sort(axis=1)
            out[s:s + 1024] = part[:, 1:].mean(1) if loo else part.mean(1)
        return out

    def score(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score, percentile) for latents (S, d)."""
        x = (np.asarray(z, np.float64) - self.mean) / self.std
        s = self._knn(x)
        return s, np.searchsorted(self.ref_scores, s, side="right") / len(self.ref_scores)


class PPADEmbedding(nn.Module):
    """sbi embedding net: frozen PPAD encoder → trainable MLP.

    ``x`` given to sbi is the latent matrix (S, d) from :meth:`encode` (the encoder is an
    optimisation, so it runs once per simulated event list rather than inside every training
    batch); the MLP maps it to ``n_out`` summary features.
    """

    def __init__(self, model: PPAD, n_out: int = 16, hidden: int = 64):
        super().__init__()
        d = model.cfg.latent_dim
        self._model = [model]                      # not a submodule: the encoder stays frozen
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, n_out))

    @property
    def model(self) -> PPAD:
        return self._model[0]

    def encode(self, events: Sequence[EventList], **kwargs) -> torch.Tensor:
        """Latents (S, d) float32 for event lists with the frozen encoder."""
        return torch.as_tensor(self.model.encode(events, **kwargs).z, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
