"""PPAD: a Poisson-process auto-decoder for event lists.

A neural field ρ(τ, b | z) gives the rate of events in energy band b at normalised time
τ = (t - tstart)/span (span = last GTI stop - first GTI start) for a source with latent
vector z.  The physical rate (counts/s per band) is

    r(t, b) = (N / E) · ρ(τ, b | z),

where N is the number of events in the bands and E the good time (s): N/E is the MLE of
a constant rate, so z describes *shape* (light curve and spectrum), not brightness.

Network (DeepONet-style factorisation, chosen so that encoding is cheap):

    ρ(τ, b | z) = softplus( Σ_k φ_k(τ) A_kb(z) + c_b(z) )

* trunk φ(τ) ∈ R^K: Fourier features γ(τ) of τ (sin, cos at ``n_freq`` frequencies from 0.5
  to ``max_freq`` cycles per span, spaced geometrically or, ``freq_spacing="linear"``,
  linearly) → linear → ``n_blocks`` residual SiLU blocks → linear, plus (``fourier_skip``) a
  linear map of γ(τ) itself, so that sinusoids at any phase are in the basis' span without
  the MLP having to synthesise them; it does not depend on z, so it is evaluated once on a
  fine grid of τ nodes (``grid`` intervals; training jitters the grid every step) and
  linearly interpolated;
* branch (A, c)(z): an MLP of the latent giving the K × n_bands mixing matrix and offsets;
* periodic head (``periodic_head``): S_b gains g_b(z)·[z₁ cos(2πfτ) + z₂ sin(2πfτ)], with
  f = :func:`head_frequency` (z₀) and band gains g_b(z) from the branch.  z₀ is not optimised:
  it is set for every source, in training and encoding, by a period search on the events
  (:func:`period_search`: highest GTI-corrected Z² peak at 1-24 cycles per span), and z₁, z₂
  start from the Fourier amplitude there.  Without it the auto-decoder does not learn
  modulation faster than ~11 cycles per span: a latent cannot find such a frequency by
  gradient descent (the likelihood is flat in z away from it).

Loss per source (divided by N, so every source weighs the same per event):

    -Σ_i log r(t_i, b_i) + Σ_b ∫_GTI r(t, b) dt + λ_TV Σ_j Σ_b |ρ_b(τ_j) - ρ_b(τ_{j-1})|
    + |z|² / (2 σ_z²)

The integral is a composite Gauss-Legendre rule inside each GTI (sub-intervals never cross
a gap, so gaps are handled exactly).  The total-variation term runs over consecutive
evaluation points in time, the GL nodes that densely cover the good time (a discretised
∫|dρ/dτ| dτ; using the nodes rather than the event times makes its cost independent of
the number of events).  Training uses up to ``max_events`` events per source per step
(random subsample, unbiased for the first term).  Training optimises the network and all
latents jointly (auto-decoder); encoding freezes the network and optimises only z (Adam,
batched over sources), starting from an amortised guess (a small MLP on binned counts,
trained to predict the auto-decoder latents) when the model has one.  The encoder's default
loss is the same objective evaluated on the interpolation grid (:func:`grid_loss`: events
histogrammed onto the grid nodes, exact GTI weights of the nodes), so its cost does not grow
with the number of events and every event is used.

The code is split by job: the field and its configuration (:mod:`.ppad_field`), prepared
inputs and batches (:mod:`.ppad_data`), losses and latent optimisers (:mod:`.ppad_loss`),
the amortised initialiser (:mod:`.ppad_init`), the trained model and encoding
(:mod:`.ppad_model`) and training (:mod:`.ppad_train`); this module re-exports them.
"""

from __future__ import annotations

from .ppad_data import (
    Batch,
    Prepared,
    _gauss_legendre,
    collate,
    gti_quadrature,
    prepare,
    shifted_gti_quadrature,
)
from .ppad_field import (
    DEFAULT_BANDS,
    HEAD_FREQ_RANGE,
    PPADConfig,
    PPADField,
    head_code,
    head_frequency,
)
from .ppad_init import (
    PERIODOGRAM_FREQS,
    LatentInit,
    binned_periodogram,
    binned_summary,
    period_search,
    summary_dim,
)
from .ppad_loss import (
    GridBatch,
    _adam_latents,
    _GridTerms,
    grid_batch,
    grid_loss,
    optimise_latents,
    optimise_latents_grid,
    source_loss,
)
from .ppad_model import FORMAT, FORMAT_KIND, LEGACY_FORMATS, PPAD, EncodeResult, default_model_dir
from .ppad_train import fit_initialiser, pca_latents, reference_set, train_ppad

__all__ = ['Batch', 'DEFAULT_BANDS', 'EncodeResult', 'FORMAT', 'FORMAT_KIND', 'GridBatch', 'HEAD_FREQ_RANGE', 'LEGACY_FORMATS', 'LatentInit', 'PERIODOGRAM_FREQS', 'PPAD', 'PPADConfig', 'PPADField', 'Prepared', '_GridTerms', '_adam_latents', '_gauss_legendre', 'binned_periodogram', 'binned_summary', 'collate', 'default_model_dir', 'fit_initialiser', 'grid_batch', 'grid_loss', 'gti_quadrature', 'head_code', 'head_frequency', 'optimise_latents', 'optimise_latents_grid', 'pca_latents', 'period_search', 'prepare', 'reference_set', 'shifted_gti_quadrature', 'source_loss', 'summary_dim', 'train_ppad']
