"""The runnable examples in the public objects' docstrings (issue 13)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["simxray.observation", "simxray.inference.problem", "simxray.io.outputs", "simxray.inference.npe",
           "simxray.inference.fitting", "simxray.inference.posterior"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples failed in {name}"
