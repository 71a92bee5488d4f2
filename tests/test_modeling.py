"""simxray.modeling (astropy Fittable1DModel adapter) and writable model outputs.

Independent references: the analytic power-law density K E^-Gamma, the transmission
exp(-nH sigma(E)) from the cross section itself, and a fit that must recover the
parameters of noiseless data.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("astropy.modeling")

from astropy.modeling import fitting  # noqa: E402

from simxray.errors import ParameterError  # noqa: E402
from simxray.modeling import astropy_model  # noqa: E402
from simxray.models import Model, available_models, fit_defaults, get_spec  # noqa: E402
from simxray.physics import absorption as A  # noqa: E402

E = np.geomspace(0.5, 8.0, 300)


def test_powerlaw_density_is_analytic():
    pl = astropy_model("powerlaw", PhoIndex=1.8, norm=1e-3)
    np.testing.assert_allclose(pl(E), 1e-3 * E ** -1.8, rtol=1e-9)
    # any input shape and order
    x = E[::-7][:42].reshape(3, 14)
    np.testing.assert_allclose(pl(x), 1e-3 * x ** -1.8, rtol=1e-9)


def test_absorption_factor_is_exp_minus_nh_sigma():
    # away from edges the cell average is the point value
    e = np.array([0.45, 0.6, 1.0, 1.5, 3.0, 5.0])
    for model, ab in (("tbabs", None), ("phabs", "aspl")):
        m = astropy_model(model, abund=ab, nH=0.7)
        ref = np.exp(-0.7e22 * A.cross_section(model, e, abund=ab))
        np.testing.assert_allclose(m(e), ref, rtol=1e-8)


def test_fit_recovers_noiseless_parameters():
    truth = astropy_model("tbabs*powerlaw", nH=0.5, PhoIndex=1.8, norm=1e-3)
    y = truth(E)
    start = astropy_model("tbabs*powerlaw", nH=0.2, PhoIndex=1.5, norm=2e-3)
    fit = fitting.LevMarLSQFitter()(start, E, y, weights=1 / (0.01 * y), maxiter=2000)
    np.testing.assert_allclose(fit.parameters, [0.5, 1.8, 1e-3], rtol=1e-6)


def test_parameters_bounds_fixed_and_integrate():
    m = astropy_model("relxill")
    frozen = {n for n, f in m.fixed.items() if f}
    assert frozen == {"Index1", "Index2", "Rbr", "Rin", "Rout", "z", "Ecut"}
    assert m.bounds["Incl"] == (5.0, 80.0) and m.bounds["gamma"] == (1.0, 3.4)
    assert "[deg]" in m.Incl.__doc__
    two = astropy_model("powerlaw+powerlaw")
    assert "powerlaw_norm" in two.param_names and "powerlaw_2_norm" in two.param_names
    pl = astropy_model("powerlaw", PhoIndex=2.0, norm=3.0)
    assert pl.integrate(np.array([1.0, 2.0]))[0] == pytest.approx(1.5, rel=1e-12)  # 3 (1 - 1/2)
    with pytest.raises(ParameterError, match="unknown"):
        astropy_model("powerlaw", gamma=2.0)
    with pytest.raises(ParameterError, match="energies"):
        pl(np.array([0.0, 1.0]))


def test_fit_defaults_within_hard_limits_for_every_model():
    for name in available_models():
        spec = get_spec(name)
        for p in spec.params:
            lo, hi, _ = fit_defaults(name, p)
            assert p.min <= lo <= p.default <= hi <= p.max, (name, p.name)
    # XSPEC's model.dat values
    nh = get_spec("tbabs").param("nH")
    assert fit_defaults("tbabs", nh) == (0.0, 1e5, False)
    assert fit_defaults("ztbabs", get_spec("ztbabs").param("Redshift"))[2] is True


@pytest.mark.parametrize("name", ["powerlaw", "tbabs", "relxill", "relconv*powerlaw",
                                  "tbabs*powerlaw"])
def test_evaluate_returns_writable_owned_arrays(name):
    """Model.evaluate gives a new float64 array: writing into it changes nothing else."""
    m = Model(name)
    e = np.geomspace(0.3, 10.0, 101)
    a = m.evaluate(e)
    ref = a.copy()
    assert a.dtype == np.float64 and a.flags.writeable and a.flags.c_contiguous
    a *= 2.0                                        # what Sherpa's calc_energy_flux does
    np.testing.assert_array_equal(m.evaluate(e), ref)
    b = m.evaluate(e, {m.short_names[0]: [m.parameters[0].parameter.default] * 2})
    assert b.shape == (2, 100) and b.flags.writeable
    b[0] = 0.0
    np.testing.assert_array_equal(b[1], ref)
