"""Evaluation of the Davis series Σ_p c_p â^{*p} for :mod:`simxray.instrument.pileup`.

The p-fold self-convolutions are formed in Fourier space with an exponential tilt that
suppresses circular aliasing (see the module documentation of
:mod:`simxray.instrument.pileup`): by Horner's rule (:func:`series_fft`), in place and
sorted by number of terms without autograd (:func:`counts_fast`), term by term with an
energy-dependent weight (:func:`series_weighted`) and, as a check, term by term with zero
padding as Sherpa does (:func:`series_sequential`).  All are float64, (B, K) in and out.
"""

from __future__ import annotations

import math

import torch

_LEN_FACTOR = 2.0  # FFT length >= _LEN_FACTOR x kernel bins


def fft_len(n: int) -> int:
    """Smallest 2^a, 3·2^a, 5·2^a or 9·2^a >= n: torch's CPU real FFTs are fastest there
    (measured, 1 thread, 512 rows: 6144 points 45 ms forward + inverse, 6075 = 3^5·5^2 86 ms)."""
    best = 1 << max(0, (n - 1).bit_length())
    for m in (3, 5, 9):
        a = max(0, math.ceil(math.log2(n / m)))
        while m << a < n:
            a += 1
        best = min(best, m << a)
    return best


def fft_tilt(K: int, device) -> tuple[int, torch.Tensor]:
    """FFT length N >= 2K and the exponential tilt θ^k (K,) with θ^N = ε.

    ε balances aliasing against round-off amplified by ε^(-K/N): ε^(1 + K/N) ≈ 1e-16.
    """
    N = fft_len(int(math.ceil(_LEN_FACTOR * K)))
    log_eps = -16.0 * math.log(10.0) / (1.0 + K / N)
    k = torch.arange(K, device=device, dtype=torch.float64)
    return N, torch.exp(k * (log_eps / N))


def series_fft(ahat: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Σ_p coef[:, p-2] · ahat^{*p}, p = 2..P, linear convolutions truncated to K (B, K)."""
    B, K = ahat.shape
    N, tilt = fft_tilt(K, ahat.device)
    F = torch.fft.rfft(ahat * tilt, n=N)
    c = coef.to(F.dtype)
    H = c[:, -1:]
    for j in range(coef.shape[1] - 2, -1, -1):
        H = c[:, j:j + 1] + F * H
    return torch.fft.irfft(H * F * F, n=N)[:, :K] / tilt


def horner_widths(F: torch.Tensor, coef: torch.Tensor, tol: float, block: int = 64) -> list[int]:
    """Columns of F that term p (and all above it) still needs, per coefficient index (J,).

    Term p contributes ``c_p F(ω)^p``.  With M(ω) ≥ |F| at and above frequency ω (√2 times
    the running maximum of |Re F| and |Im F| over blocks of ``block`` columns, capped at 1
    as |F| ≤ Σ â = 1), everything from p up is below ``M(ω)^p Σ_{q≥p} c_q``.  Frequencies
    where that is below tol · max(1, Σ c) are dropped from the Horner steps of degree ≥ p.
    """
    B, W = F.shape
    nb = W // block
    re_im = torch.view_as_real(F)  # (B, W, 2)

    def absmax(x: torch.Tensor) -> torch.Tensor:
        lo, hi = torch.aminmax(x, dim=-1)
        return torch.maximum(hi, -lo)

    M = absmax(re_im[:, : nb * block].reshape(B, nb, 2 * block))
    tail = absmax(re_im[:, nb * block:].reshape(B, 1, -1)) if W > nb * block \
        else torch.zeros_like(M[:, :1])
    M = torch.cat([M, tail], 1)
    M = torch.flip(torch.cummax(torch.flip(M, [1]), 1).values, [1])
    M = torch.clamp(M * math.sqrt(2.0), max=1.0)  # (B, nb + 1), non-increasing in frequency
    C = torch.flip(torch.cumsum(torch.flip(coef, [1]), 1), [1])  # Σ_{q≥p} c_q  (B, J)
    thr = tol * torch.clamp(coef.sum(1, keepdim=True), min=1.0)
    q = torch.arange(2, coef.shape[1] + 2, device=F.device, dtype=M.dtype)
    # keep block b for degree p when p log M_b >= log(thr / C_p)
    need = torch.log(thr / torch.clamp(C, min=1e-300)) / q  # (B, J)
    logM = torch.log(torch.clamp(M, min=1e-300))
    nblocks = (logM[:, :, None] >= need[:, None, :]).sum(1).amax(0)  # (J,)
    edges = torch.arange(nb + 2, device=F.device) * block
    return torch.clamp(edges[nblocks], max=W).tolist()


def counts_fast(a0: torch.Tensor, S0: torch.Tensor, coef: torch.Tensor, degree: torch.Tensor,
                 scale: torch.Tensor, w1: torch.Tensor, tol: float = 1e-16) -> torch.Tensor:
    """``a0 w1 + scale Σ_p c_p (a0/S0)^{*p}`` without autograd, in place (B, K).

    Rows are sorted by their number of terms so that the Horner loop only touches the
    spectra that still need a term, and each degree only the frequencies where it is
    not negligible (:func:`horner_widths`).
    """
    B, K = a0.shape
    N, tilt = fft_tilt(K, a0.device)
    order = torch.argsort(degree, descending=True, stable=True)
    a_s = a0[order]
    x = a0.new_empty((B, N))  # zero-padded here: rfft(n=N) would pad with another copy
    x[:, K:].zero_()
    torch.div(a_s, S0[order, None], out=x[:, :K]).mul_(tilt)
    F = torch.fft.rfft(x)
    del x
    c = coef[order]
    J = coef.shape[1]
    active = (degree[order][None, :] > torch.arange(J, device=a0.device)[:, None]).sum(1).tolist()
    width = horner_widths(F, c, tol)
    c = c.to(F.dtype)
    H = torch.zeros_like(F)
    m, w = 0, 0
    for j in range(J - 1, -1, -1):  # H <- c_j + F H over the active rows and frequencies
        m, w = max(active[j], m), max(width[j], w)
        if m and w:
            torch.addcmul(c[:m, j:j + 1], F[:m, :w], H[:m, :w], out=H[:m, :w])
    H[:m, :w].mul_(F[:m, :w]).mul_(F[:m, :w])
    y = torch.fft.irfft(H, n=N)[:, :K]
    y.div_(tilt).mul_(scale[order, None]).addcmul_(a_s, w1[order, None])
    out = torch.empty_like(y)
    out[order] = y
    return out


def series_weighted(ahat: torch.Tensor, coef: torch.Tensor, alpha_e: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_p coef[:, p-2] · alpha_e^(p-1) · ahat^{*p} (B, K) and Σ_p coef · <alpha_e^(p-1)> (B,).

    The energy-dependent weight multiplies each term after its convolution, so the terms
    are formed one by one (one inverse FFT each) instead of by Horner's rule; the tilted
    FFT of :func:`series_fft` keeps the linear convolutions.  ``<.>`` is the mean over the
    term's (truncated) energy distribution, used for the pileup fraction.
    """
    B, K = ahat.shape
    N, tilt = fft_tilt(K, ahat.device)
    F = torch.fft.rfft(ahat * tilt, n=N)
    Fp = F
    series = torch.zeros_like(ahat)
    piled = torch.zeros_like(ahat[:, 0])
    log_alpha = torch.log(alpha_e.clamp_min(1e-300))
    for j in range(coef.shape[1]):  # pile size p = j + 2
        Fp = Fp * F
        conv = torch.fft.irfft(Fp, n=N)[:, :K] / tilt
        weight = torch.exp((j + 1) * log_alpha) if j else alpha_e  # alpha(E)^(p-1)
        series = series + coef[:, j:j + 1] * weight * conv
        mass = conv.sum(-1)
        mean_w = (weight * conv).sum(-1) / torch.where(mass > 0, mass, torch.ones_like(mass))
        piled = piled + coef[:, j] * mean_w
    return series, piled


def series_sequential(ahat: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Same as :func:`series_fft`, term by term with zero padding (Sherpa's algorithm)."""
    B, K = ahat.shape
    N = 2 * K
    F = torch.fft.rfft(ahat, n=N)
    cur = ahat
    out = torch.zeros_like(ahat)
    for j in range(coef.shape[1]):
        cur = torch.fft.irfft(torch.fft.rfft(cur, n=N) * F, n=N)[:, :K]
        out = out + coef[:, j:j + 1] * cur
    return out


__all__ = ["counts_fast", "fft_len", "horner_widths", "series_fft", "series_sequential", "series_weighted", "fft_tilt"]
