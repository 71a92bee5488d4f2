"""The counts emulator's network and Cash statistic in one compiled pass (emcee's fast path).

The ``counts`` emulator gives log μ = mean + h @ W, with h (B, H) its last hidden layer
and W = out_W @ (basis · scale) (H, C): the output layer and the principal-component
basis fold into one matrix, and the input scaling folds into the first layer.  For fixed
counts x the data term Σ x log(μ + b) over channels without expected background is then
h · (W x) + mean · x, an H-vector product instead of C logarithms; only Σ μ needs the C
exponentials, and channels with background b > 0 are summed explicitly.

With numba the whole pass (layers, SiLU, output, statistic) is one compiled loop per
spectrum: a single likelihood costs tens of microseconds, where numpy spends most of its
time in per-call overhead of ~25 small array operations.  Without numba the same
arithmetic runs in numpy.  Both equal ``cstat(x, emulator.expected(θ) + b)`` to the
float32 round-off of the matrix products (~1e-6 relative in μ).

No range check here: callers keep θ in the training range (emcee's prior does, after
:meth:`~simxray.inference.emulator.Emulator.check_prior`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit, xlogy

from ..errors import SimxrayError

try:                                             # optional at import, a dependency in practice
    from numba import njit
except ImportError:                              # pragma: no cover - numba is in pyproject
    njit = None

#: batches up to this size go through the compiled per-spectrum loop; larger ones through
#: numpy's matrix products (BLAS wins once the per-call overhead is amortised)
COMPILED_MAX_BATCH = 64


def _hidden_kernel(t, logmask, W1, b1, Ws, bs, h, h2):        # pragma: no cover - compiled
    """Last hidden layer h (H,) float32 for one parameter vector t (P,) float64.

    Weights are stored (out, in) so that every unit is a contiguous dot product (which
    LLVM vectorises under fastmath)."""
    H, P = W1.shape
    for i in range(P):
        ti = t[i]
        if logmask[i]:
            ti = math.log(ti)
        h2[i] = np.float32(ti)
    for j in range(H):
        acc = b1[j]
        for i in range(P):
            acc += W1[j, i] * h2[i]
        h[j] = acc / (np.float32(1.0) + math.exp(-acc))
    for layer in range(bs.shape[0]):
        for j in range(H):
            h2[j] = h[j]
        for j in range(H):
            acc = bs[layer, j]
            for i in range(H):
                acc += Ws[layer, j, i] * h2[i]
            h[j] = acc / (np.float32(1.0) + math.exp(-acc))


def _output_kernel(h, Wf, z):                                    # pragma: no cover - compiled
    """z (C,) = Wf @ h in float32, Wf stored (C, H)."""
    for c in range(z.size):
        acc = np.float32(0.0)
        for i in range(h.size):
            acc += Wf[c, i] * h[i]
        z[c] = acc


def _cstat_rows(t, logmask, W1, b1, Ws, bs, Wf, mean, v, v0, const, mixed, xm, bm,
                out):                                            # pragma: no cover - compiled
    H, C = b1.size, mean.size
    h = np.empty(H, np.float32)
    h2 = np.empty(max(H, t.shape[1]), np.float32)
    z = np.empty(C, np.float32)
    for r in range(t.shape[0]):
        _hidden(t[r], logmask, W1, b1, Ws, bs, h, h2)
        _output(h, Wf, z)
        s = 0.0
        for c in range(C):
            s += math.exp(mean[c] + z[c])
        d = v0
        for i in range(H):
            d += h[i] * v[i]
        for k in range(mixed.size):
            c = mixed[k]
            d += xm[k] * math.log(math.exp(mean[c] + z[c]) + bm[k])
        out[r] = 2.0 * (s - d + const)


def _log_mu_rows(t, logmask, W1, b1, Ws, bs, Wf, mean, out):     # pragma: no cover - compiled
    H, C = b1.size, mean.size
    h = np.empty(H, np.float32)
    h2 = np.empty(max(H, t.shape[1]), np.float32)
    z = np.empty(C, np.float32)
    for r in range(t.shape[0]):
        _hidden(t[r], logmask, W1, b1, Ws, bs, h, h2)
        _output(h, Wf, z)
        for c in range(C):
            out[r, c] = mean[c] + z[c]


if njit is not None:
    _jit = njit(cache=True, fastmath=True, nogil=True)
    _hidden = _jit(_hidden_kernel)
    _output = _jit(_output_kernel)
    _cstat_compiled = _jit(_cstat_rows)
    _log_mu_compiled = _jit(_log_mu_rows)
else:                                                            # pragma: no cover
    _cstat_compiled = _log_mu_compiled = None


class FoldedNetwork:
    """The emulator's network with the input scaling, output layer and basis folded:
    log μ = mean + h(θ) @ Wf.  ``log_mu(theta)`` (B, C) float64."""

    def __init__(self, weights: dict):
        w = weights
        (W1, b1), *hidden = w["hidden"]
        W1 = W1.astype(np.float64)
        H = W1.shape[1]
        if any(W.shape != (H, H) for W, _ in hidden):
            raise SimxrayError("the compiled path needs equal hidden widths", field="hidden")
        self.logmask = np.zeros(W1.shape[0], dtype=np.bool_)
        self.logmask[w["log_cols"]] = True
        self.log_cols = w["log_cols"]
        self.W1 = np.ascontiguousarray(w["a"][:, None] * W1, dtype=np.float32)
        self.b1 = (w["c"] @ W1 + b1).astype(np.float32)
        self.hidden = hidden
        self.Ws = np.ascontiguousarray(np.stack([W.T for W, _ in hidden]) if hidden else
                                       np.zeros((0, H, H)), dtype=np.float32)   # (out, in)
        self.bs = np.ascontiguousarray(np.stack([b for _, b in hidden]) if hidden else
                                       np.zeros((0, H)), dtype=np.float32)
        out_W = w["out_W"].astype(np.float64)
        if w["basis"] is not None:
            basis = w["basis"].astype(np.float64)           # already multiplied by the scale
            Wf, cf = out_W @ basis, w["out_b"].astype(np.float64) @ basis
        else:
            Wf, cf = out_W * w["scale"][None, :], w["out_b"].astype(np.float64) * w["scale"]
        self.Wf64 = Wf
        self.Wf = np.ascontiguousarray(Wf, dtype=np.float32)
        self.WfT = np.ascontiguousarray(Wf.T, dtype=np.float32)        # (C, H) compiled
        self.W1T = np.ascontiguousarray(self.W1.T)                      # (H, P) compiled
        self.mean = np.ascontiguousarray(w["mean"] + cf, dtype=np.float64)
        self.floor = np.where(self.logmask, 1e-300, -np.inf)       # log-column guard
        self.compiled = _log_mu_compiled is not None

    def _theta(self, theta: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.atleast_2d(theta), dtype=np.float64)

    def hidden_state(self, theta: np.ndarray) -> np.ndarray:
        """The last hidden layer h (B, H) float32 (numpy)."""
        t = np.array(theta, dtype=np.float64, ndmin=2)
        lc = self.log_cols
        t[:, lc] = np.log(np.maximum(t[:, lc], 1e-300))
        h = t.astype(np.float32) @ self.W1
        h += self.b1
        h *= expit(h)                                              # SiLU
        for W, bias in self.hidden:
            h = h @ W
            h += bias
            h *= expit(h)
        return h

    def log_mu(self, theta: np.ndarray) -> np.ndarray:
        """log μ (B, C) float64."""
        t = self._theta(theta)
        if self.compiled and len(t) <= COMPILED_MAX_BATCH:
            out = np.empty((len(t), self.mean.size))
            _log_mu_compiled(np.maximum(t, self.floor), self.logmask, self.W1T, self.b1,
                             self.Ws, self.bs, self.WfT, self.mean, out)
            return out
        return self.hidden_state(t) @ self.Wf + self.mean


class EmulatorCStat:
    """``C(θ) = cstat(x, μ_emu(θ) + b)`` summed over channels, (B,) for θ (B, P).

    ``counts`` (C,) are the observed counts in the emulator's channels; ``background_mu``
    (C,) the expected background counts added to the model (or None).
    """

    def __init__(self, emulator, counts: np.ndarray, background_mu: np.ndarray | None = None):
        if getattr(emulator, "target", None) != "counts" or getattr(emulator, "in_cols", None):
            raise SimxrayError("the fast C-stat needs a 'counts' emulator", field="target")
        net = emulator.folded
        x = np.asarray(counts, dtype=np.float64)
        n = net.mean.size
        if x.shape != (n,):
            raise SimxrayError(f"expected {n} counts (the emulator's channels), got shape "
                               f"{x.shape}", field="counts")
        b = np.zeros(n) if background_mu is None else np.broadcast_to(
            np.asarray(background_mu, dtype=np.float64), (n,)).copy()
        self.net = net
        plain = (x > 0) & (b <= 0)
        self.mixed = np.flatnonzero((x > 0) & (b > 0)).astype(np.int64)
        self.x_mixed, self.b_mixed = x[self.mixed], b[self.mixed]
        self.v = net.Wf64[:, plain] @ x[plain]                     # (H,) float64
        self.v0 = float(net.mean[plain] @ x[plain])
        self.const = float(np.sum(xlogy(x, x) - x) + b.sum())

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        """C-stat (B,) for θ (B, P) in physical units."""
        net = self.net
        t = net._theta(theta)
        if net.compiled and len(t) <= COMPILED_MAX_BATCH:
            out = np.empty(len(t))
            _cstat_compiled(np.maximum(t, net.floor), net.logmask, net.W1T, net.b1, net.Ws,
                            net.bs, net.WfT, net.mean, self.v, self.v0, self.const, self.mixed,
                            self.x_mixed, self.b_mixed, out)
            return out
        h = net.hidden_state(t)
        mu = np.exp(h @ net.Wf + net.mean)
        data = h.astype(np.float64) @ self.v + self.v0
        if self.mixed.size:
            data += np.log(mu[:, self.mixed] + self.b_mixed) @ self.x_mixed
        return 2.0 * (mu.sum(1) - data + self.const)
