"""Inference: amortised neural posterior estimation (NPE) for piled-up spectra.

* :mod:`.embedding`   1-D CNN / ResNet / MLP summaries of count spectra
* :mod:`.npe`         the flow (zuko spline flow over prior-bounded parameters), datasets,
                      the resumable training loop
* :mod:`.saving`      safetensors weights + JSON config; never pickles
* :mod:`.fit`         posterior samples, summary, checks and plots for one spectrum
* :mod:`.diagnostics` SBC ranks, coverage, TARP, recovery, posterior-predictive checks
* :mod:`.stats`       C-stat and W-stat

Nothing heavy is imported here: torch and friends load with the submodules that need them.
"""
