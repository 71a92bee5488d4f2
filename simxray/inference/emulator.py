"""Neural emulator of the piled-up forward model: θ → expected counts per channel.

Two targets share one network design (an MLP on unit-scaled parameters whose output is
log μ in a fixed linear basis):

* ``target = "counts"`` (the default and the shipped emulator): every parameter (source
  and pileup) → log expected source counts per channel, ARF, RMF and pileup included.
  One small matrix product chain per batch: tens of microseconds per spectrum.
* ``target = "source"``: the model parameters → log of the source spectrum on the pileup
  kernel grid (photons/cm²/s per bin); the exact Davis pileup and the RMF fold
  (:mod:`simxray.instrument.pileup`) are applied afterwards.  Nearly exact, but it pays for
  the pileup convolution and the fold, which dominate the simulator's cost.

Inputs: each parameter scaled to [-1, 1] over its training range (in log for log-uniform
priors).  Outputs: ``log μ = mean + std · (z @ basis)`` with per-channel mean and scale of
the training set's log μ and ``basis`` either the identity or the leading principal
components.  Loss: squared log error weighted by the Poisson variance (μ + 1): an error
δ in log μ costs about μ δ² in C-stat, so the fit concentrates where the likelihood does.

An emulator directory holds ``weights.safetensors`` (network + buffers) and
``config.json`` (format, target, prior, model, parameter names and training ranges,
fixed values, response identity with sha256, exposure, frame time, channels, the
simulation config, architecture, training summary, versions, provenance, weights
sha256), plus ``training.json`` (loss history).  No pickles.

The code is split by job: the network (:mod:`.emulator_net`), the :class:`Emulator`
object (:mod:`.emulator_model`), training (:mod:`.emulator_train`), validation
(:mod:`.emulator_validate`), timing (:mod:`.emulator_timing`) and figures
(:mod:`simxray.plots`); this module re-exports their public names.

Out-of-range parameters raise :class:`~simxray.errors.ParameterError` (or warn and clamp
with ``on_range="warn"``); spectra and responses the emulator was not trained for raise
:class:`~simxray.errors.ResponseMismatchError` (:meth:`Emulator.check_spectrum`).
"""

from __future__ import annotations

from ..io.modeldir import CONFIG, WEIGHTS
from .emulator_model import (
    DEFAULT_DIR,
    FORMAT,
    FORMAT_VERSION,
    LOG_FLOOR,
    RANGE_TOL,
    REL_TOL,
    REQUIRED_KEYS,
    SOURCE_FLOOR,
    TARGETS,
    Emulator,
    default_emulator_dir,
    load_emulator,
    one_blas_thread,
)
from .emulator_net import EmulatorNet
from .emulator_timing import speed_comparison, time_per_call
from .emulator_train import (
    DEFAULTS,
    architecture,
    emulator_from_arrays,
    fit_network,
    resolve_settings,
    source_targets,
    train_emulator,
)
from .emulator_validate import (
    _json_ready,
    accuracy,
    delta_cstat,
    format_validation,
    validate_emulator,
)

__all__ = ["CONFIG", "DEFAULTS", "DEFAULT_DIR", "FORMAT", "FORMAT_VERSION", "LOG_FLOOR", "RANGE_TOL",
           "REL_TOL", "REQUIRED_KEYS", "SOURCE_FLOOR", "TARGETS", "WEIGHTS", "Emulator", "EmulatorNet",
           "_json_ready", "accuracy", "architecture", "default_emulator_dir", "delta_cstat",
           "emulator_from_arrays", "fit_network", "format_validation", "load_emulator", "one_blas_thread",
           "resolve_settings", "source_targets", "speed_comparison", "time_per_call", "train_emulator",
           "validate_emulator"]
