"""simxray: simulation-based inference for piled-up Chandra X-ray spectra."""

__version__ = "0.1.0"
