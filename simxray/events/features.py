"""PPAD latents as a shared feature extractor.

* :func:`decoded_summaries`: quantities computed from z alone through the frozen decoder
  (time-averaged band fractions and the CSC hardness ratios of the decoded rates).
* :func:`feature_matrix`: z, optionally with those decoded summaries (still functions of z
  only; no count summaries of the events are added).
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


def decoded_summaries(model: PPAD, z: np.ndarray, n_tau: int = 128) -> np.ndarray:
    """Descriptors computed from z alone through the frozen decoder, on τ ∈ [0, 1]:

    * time-averaged band fractions (n_bands) and CSC hardness ratios hm, ms, hs (3);
    * shape of the total decoded light curve L(τ)/mean: quantiles 0, 5, 25, 50, 75, 95,
      100 % (7), the largest non-DC power of its Fourier transform and that frequency (2),
      the number of local maxima above 1.5× the median (1);
    * time variability of the spectrum: standard deviation over τ of the decoded hard_hs and
      hard_ms (2).

    Shape (S, n_bands + 15).
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
        lc = rho.sum(2)
        lc = lc / lc.mean(1, keepdims=True)
        q = np.quantile(lc, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0], axis=1).T
        pw = np.abs(np.fft.rfft(lc - 1.0, axis=1)[:, 1:]) ** 2 / n_tau
        pk = np.column_stack([np.log10(pw.max(1) + 1e-9), (pw.argmax(1) + 1).astype(np.float64)])
        med = np.median(lc, axis=1, keepdims=True)
        peaks = ((lc[:, 1:-1] > lc[:, :-2]) & (lc[:, 1:-1] >= lc[:, 2:]) & (lc[:, 1:-1] > 1.5 * med)).sum(1)
        st, mt, ht = (rho[:, :, sel].sum(2) for sel in (s_sel, m_sel, h_sel))
        hs_t, ms_t = (ht - st) / (ht + st + 1e-12), (mt - st) / (mt + st + 1e-12)
        out.append(np.column_stack([frac, hr, q, pk, peaks, hs_t.std(1), ms_t.std(1)]))
    n_col = model.cfg.n_bands + 15
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, n_col), np.float32)


def feature_matrix(model: PPAD, z: np.ndarray, *, decoded: bool = True) -> np.ndarray:
    """Features for downstream models: z, plus :func:`decoded_summaries` when ``decoded``."""
    z = np.asarray(z, np.float32)
    return np.column_stack([z, decoded_summaries(model, z)]) if decoded else z


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
