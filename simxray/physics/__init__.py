"""Spectral models on energy-bin edges (keV), photons/cm^2/s per bin, batched."""
