"""Model registry, expression parser, continuum models and ``simxray model``.

Continuum models are checked against Sherpa's own models (integrated over the same
bins) and against numerical integrals of the XSPEC definitions.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from simxray.cli import main
from simxray.errors import ModelError, ParameterError
from simxray.models import Model, available_models, check_edges, get_spec, make_grid

EDGES = np.geomspace(0.3, 10.0, 41)


def bins_quad(f, edges):
    return np.array([quad(f, lo, hi, epsrel=1e-11, limit=200)[0]
                     for lo, hi in zip(edges[:-1], edges[1:], strict=True)])


# ---------------------------------------------------------------------------
# registry and parser
def test_registry_has_xspec_models():
    names = available_models()
    for n in ("powerlaw", "zpowerlw", "cutoffpl", "bbodyrad", "gaussian", "zgauss", "constant",
              "tbabs", "phabs", "wabs"):
        assert n in names
    assert get_spec("TBabs").kind == "mul" and get_spec("powerlaw").kind == "add"
    p = get_spec("powerlaw").param("phoindex")
    assert (p.name, p.default, p.min, p.max) == ("PhoIndex", 1.0, -3.0, 10.0)
    with pytest.raises(ModelError, match="unknown model"):
        get_spec("nosuchmodel")
    with pytest.raises(ParameterError, match="expected one of PhoIndex, norm"):
        get_spec("powerlaw").param("gamma")


def test_expression_structure_and_parameter_names():
    m = Model("tbabs*powerlaw + gaussian")
    assert [c.instance for c in m.components] == ["tbabs", "powerlaw", "gaussian"]
    assert m.kind == "add"
    assert m.param_names == ["tbabs.nH", "powerlaw.PhoIndex", "powerlaw.norm",
                             "gaussian.LineE", "gaussian.Sigma", "gaussian.norm"]
    assert m.short_names == ["nH", "PhoIndex", "powerlaw.norm", "LineE", "Sigma",
                             "gaussian.norm"]
    assert m.lookup("NH").name == "tbabs.nH"  # case-insensitive short name
    assert m.lookup("Gaussian.Norm").name == "gaussian.norm"
    with pytest.raises(ParameterError, match="ambiguous; expected one of powerlaw.norm, gaussian.norm"):
        m.lookup("norm")
    with pytest.raises(ParameterError, match="unknown parameter"):
        m.lookup("kT")
    m2 = Model("gaussian + gaussian")
    assert [c.instance for c in m2.components] == ["gaussian", "gaussian_2"]
    assert Model("tbabs*wabs").kind == "mul"


def test_expression_semantics():
    # '*' binds tighter than '+': the gaussian is not absorbed; parentheses absorb both
    p = {"nH": 2.0, "PhoIndex": 1.8, "powerlaw.norm": 3.0, "LineE": 1.0, "Sigma": 0.05,
         "gaussian.norm": 0.1}
    t = Model("tbabs").evaluate(EDGES, {"nH": 2.0})
    pl = Model("powerlaw").evaluate(EDGES, {"PhoIndex": 1.8, "norm": 3.0})
    g = Model("gaussian").evaluate(EDGES, {"LineE": 1.0, "Sigma": 0.05, "norm": 0.1})
    np.testing.assert_allclose(Model("tbabs*powerlaw + gaussian").evaluate(EDGES, p), t * pl + g)
    np.testing.assert_allclose(Model("tbabs*(powerlaw + gaussian)").evaluate(EDGES, p), t * (pl + g))
    c = Model("constant*tbabs*powerlaw").evaluate(
        EDGES, {"factor": 0.5, "nH": 2.0, "PhoIndex": 1.8, "norm": 3.0})
    np.testing.assert_allclose(c, 0.5 * t * pl)


@pytest.mark.parametrize("expr", ["", "powerlaw +", "tbabs**powerlaw", "(powerlaw", "powerlaw)",
                                  "tbabs + powerlaw", "power-law", "nosuch*powerlaw"])
def test_malformed_expressions_raise_model_error(expr):
    with pytest.raises(ModelError):
        Model(expr)


def test_batch_shapes_and_broadcasting():
    m = Model("tbabs*powerlaw")
    assert m.evaluate(EDGES, {"PhoIndex": 2.0}).shape == (40,)
    out = m.evaluate(EDGES, {"PhoIndex": [1.5, 2.0, 2.5], "nH": 0.3})
    assert out.shape == (3, 40)
    for i, g in enumerate([1.5, 2.0, 2.5]):
        np.testing.assert_allclose(out[i], m.evaluate(EDGES, {"PhoIndex": g, "nH": 0.3}))
    both = m.evaluate(EDGES, {"PhoIndex": [1.5, 2.0], "nH": [0.1, 1.0]})
    np.testing.assert_allclose(both[1], m.evaluate(EDGES, {"PhoIndex": 2.0, "nH": 1.0}))
    assert m.evaluate(EDGES, {"PhoIndex": [2.0]}).shape == (1, 40)
    with pytest.raises(ParameterError, match="batch size"):
        m.evaluate(EDGES, {"PhoIndex": [1.5, 2.0], "nH": [0.1, 0.2, 0.3]})
    with pytest.raises(ParameterError, match="1-D"):
        m.evaluate(EDGES, {"PhoIndex": [[1.5, 2.0]]})


@pytest.mark.parametrize("params,match", [
    ({"PhoIndex": np.nan}, "powerlaw.PhoIndex: expected a finite number"),
    ({"PhoIndex": [2.0, np.inf]}, "finite"),
    ({"PhoIndex": 11.0}, r"powerlaw.PhoIndex: value 11 outside the hard limits \[-3, 10\]"),
    ({"nH": -1.0}, "tbabs.nH: value -1 outside"),
    ({"norm": -1.0}, "powerlaw.norm"),
    ({"Tin": 1.0}, "Tin: unknown parameter"),
])
def test_bad_parameters_raise_parameter_error(params, match):
    with pytest.raises(ParameterError, match=match):
        Model("tbabs*powerlaw").evaluate(EDGES, params)


def test_edges_and_grid_validation():
    with pytest.raises(ParameterError, match="edges"):
        check_edges([1.0, 0.5, 2.0])
    with pytest.raises(ParameterError, match="edges"):
        check_edges([1.0])
    with pytest.raises(ParameterError, match="edges"):
        Model("powerlaw").evaluate(np.array([0.5, np.nan, 2.0]))
    np.testing.assert_allclose(make_grid("1:100:2:log"), [1.0, 10.0, 100.0])
    np.testing.assert_allclose(make_grid("0:1:4:lin"), [0, 0.25, 0.5, 0.75, 1.0])
    for bad in ("1:2", "0:10:5:log", "2:1:5", "1:2:x", "1:2:3:cubic"):
        with pytest.raises(ParameterError, match="--grid"):
            make_grid(bad)


# ---------------------------------------------------------------------------
# continuum models vs Sherpa and analytic / numerical integrals
@pytest.mark.parametrize("gamma", [-1.0, 0.0, 1.0, 1.0 + 1e-9, 1.7, 3.0])
def test_powerlaw_vs_sherpa_and_analytic(gamma):
    sherpa_basic = pytest.importorskip("sherpa.models.basic")
    m = sherpa_basic.PowLaw1D()
    m.gamma, m.ampl, m.ref = gamma, 2.5, 1.0
    ours = Model("powerlaw").evaluate(EDGES, {"PhoIndex": gamma, "norm": 2.5})
    # at s = 1 - gamma = -1e-9 Sherpa's (hi^s - lo^s)/s loses ~1e-6 to cancellation and our
    # log(hi/lo) branch is first order in s (error ~ s ln E ~ 2e-9)
    near_one = 0 < abs(gamma - 1.0) < 1e-6
    np.testing.assert_allclose(ours, m(EDGES[:-1], EDGES[1:]), rtol=1e-5 if near_one else 1e-7)
    np.testing.assert_allclose(ours, bins_quad(lambda e: 2.5 * e ** -gamma, EDGES),
                               rtol=1e-8 if near_one else 1e-9)


def test_gaussian_vs_sherpa_normgauss():
    sherpa_basic = pytest.importorskip("sherpa.models.basic")
    m = sherpa_basic.NormGauss1D()
    m.pos, m.fwhm, m.ampl = 6.4, 0.2 * np.sqrt(8 * np.log(2)), 1e-3
    edges = np.linspace(5.0, 8.0, 301)
    ours = Model("gaussian").evaluate(edges, {"LineE": 6.4, "Sigma": 0.2, "norm": 1e-3})
    np.testing.assert_allclose(ours, m(edges[:-1], edges[1:]), rtol=1e-9, atol=1e-18)
    assert ours.sum() == pytest.approx(1e-3, rel=1e-9)
    # Sigma = 0: the whole line in the bin that contains LineE
    delta = Model("gaussian").evaluate(edges, {"LineE": 6.4049, "Sigma": 0.0, "norm": 2.0})
    assert delta.sum() == 2.0 and delta[140] == 2.0


def test_zgauss_and_zpowerlw_definitions():
    z = 0.5
    zg = Model("zgauss").evaluate(EDGES, {"LineE": 6.0, "Sigma": 0.3, "Redshift": z, "norm": 1.0})
    ref = bins_quad(lambda e: np.exp(-0.5 * ((e - 4.0) / 0.2) ** 2) / (np.sqrt(2 * np.pi) * 0.2)
                    / (1 + z), EDGES)
    np.testing.assert_allclose(zg, ref, rtol=1e-7, atol=1e-14)
    # XSPEC zpowerlw: K [E (1 + z)]^-alpha
    zp = Model("zpowerlw").evaluate(EDGES, {"PhoIndex": 1.7, "Redshift": z, "norm": 2.0})
    np.testing.assert_allclose(zp, bins_quad(lambda e: 2.0 * (e * (1 + z)) ** -1.7, EDGES),
                               rtol=1e-9)


def test_cutoffpl_vs_numerical_integral():
    f = lambda e: 0.7 * e ** -1.3 * np.exp(-e / 4.0)  # noqa: E731
    ours = Model("cutoffpl").evaluate(EDGES, {"PhoIndex": 1.3, "HighECut": 4.0, "norm": 0.7})
    np.testing.assert_allclose(ours, bins_quad(f, EDGES), rtol=1e-8)


@pytest.mark.parametrize("kT", [0.2, 1.5, 30.0])
def test_bbodyrad_vs_sherpa_bbody(kT):
    astro = pytest.importorskip("sherpa.astro.models")
    m = astro.BBody()
    m.space, m.kT, m.ampl = 0, kT, 1.0344e-3 * 4.0  # XSPEC bbodyrad constant x norm
    edges = np.geomspace(0.3, min(10.0, 40 * kT), 41)
    ours = Model("bbodyrad").evaluate(edges, {"kT": kT, "norm": 4.0})
    np.testing.assert_allclose(ours, m(edges[:-1], edges[1:]), rtol=1e-6)
    f = lambda e: 4.0 * 1.0344e-3 * e * e / np.expm1(e / kT)  # noqa: E731
    np.testing.assert_allclose(ours, bins_quad(f, edges), rtol=1e-8)


def test_bbodyrad_bolometric_flux():
    # norm = R_km^2 / D_10kpc^2: norm 1 is R = 1 km at 10 kpc; energy flux sigma T^4 (R/D)^2.
    # XSPEC's constant 1.0344e-3 is 0.35 % below the exact 2 pi/(h^3 c^2)(1 km/10 kpc)^2.
    edges = np.geomspace(1e-3, 60.0, 4001)
    flux = Model("bbodyrad").evaluate(edges, {"kT": 1.0, "norm": 1.0})
    e_mid = np.sqrt(edges[:-1] * edges[1:])
    energy_flux = (flux * e_mid).sum() * 1.602176634e-9  # erg/cm^2/s
    sigma_sb, kelvin_per_kev = 5.670374419e-5, 1.160451812e7
    r, d = 1e5, 10 * 3.0856775814913673e21
    assert energy_flux == pytest.approx(sigma_sb * kelvin_per_kev**4 * (r / d) ** 2, rel=5e-3)


# ---------------------------------------------------------------------------
# simxray model through the CLI
def test_cli_model_writes_csv(tmp_path, capsys):
    out = tmp_path / "spec.csv"
    rc = main(["model", "tbabs*powerlaw + gaussian", "--grid", "0.5:8:30:log", "--param", "nH=0.4",
               "--param", "PhoIndex=1.9,powerlaw.norm=2", "--param", "LineE=6.4", "--out", str(out)])
    assert rc == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# simxray model tbabs*powerlaw + gaussian")
    assert lines[1] == "# e_lo,e_hi,flux"
    data = np.loadtxt(out, delimiter=",")
    assert data.shape == (30, 3)
    edges = make_grid("0.5:8:30:log")
    np.testing.assert_allclose(data[:, 0], edges[:-1], rtol=1e-9)
    np.testing.assert_allclose(data[:, 1], edges[1:], rtol=1e-9)
    ref = Model("tbabs*powerlaw + gaussian").evaluate(
        edges, {"nH": 0.4, "PhoIndex": 1.9, "powerlaw.norm": 2, "LineE": 6.4})
    np.testing.assert_allclose(data[:, 2], ref, rtol=1e-9)


def test_cli_model_stdout_and_list(capsys):
    assert main(["model", "wabs*powerlaw", "--grid", "1:2:2:lin"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == "e_lo,e_hi,flux" and len(text) == 3
    assert main(["model", "tbabs*powerlaw", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "nH" in listing and "1e+06" in listing and "PhoIndex" in listing


@pytest.mark.parametrize("argv,needle", [
    (["model", "nosuchmodel"], "nosuchmodel: unknown model"),
    (["model", "tbabs*powerlaw", "--param", "nH=-1"], "tbabs.nH: value -1 outside"),
    (["model", "powerlaw", "--param", "PhoIndex=nan"], "expected a finite number"),
    (["model", "powerlaw", "--param", "PhoIndex=abc"], "PhoIndex: expected a number"),
    (["model", "powerlaw", "--param", "PhoIndex"], "expected NAME=VALUE"),
    (["model", "powerlaw", "--grid", "10:1:5"], "--grid 10:1:5"),
    (["model", "powerlaw + ", "--grid", "1:2:3"], "ends unexpectedly"),
])
def test_cli_model_bad_input_exit_2(argv, needle, capsys, tmp_path):
    rc = main([*argv, "--out", str(tmp_path / "x.csv")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simxray model: error: ")
    assert needle in err
    assert not (tmp_path / "x.csv").exists()
