"""Domain adaptation of the pileup prescription with HETG-paired data.

* :mod:`.pairs`       PAIRS.toml: first-order grating + piled spectra of one observation;
* :mod:`.forward`     fit-space source models; the core Davis kernel bound with alpha(E) and an efficiency;
* :mod:`.grating`     source posteriors from the (pileup-free) first orders;
* :mod:`.calibrate`   hierarchical calibration of the pileup nuisance parameters;
* :mod:`.correction`  learned residual correction of the piled spectrum given the source;
* :mod:`.simulator`   the adapted simulator (nuisance prescriptions) and NPE through the core trainer;
* :mod:`.metrics`     bias, coverage, misspecification scores and ML baselines;
* :mod:`.pipeline`    the whole adaptation behind ``simxray adapt`` and its outputs;
* :mod:`.synthetic`   synthetic pairs with a hidden truth (3C 120 + event-level pileup).
"""
