"""Small shims so simxray runs on Python 3.10 as well as 3.11+.

* ``tomllib``: the standard library's TOML parser (3.11+), else the ``tomli`` backport
  (a dependency on 3.10 only; same API, ``loads`` and ``TOMLDecodeError``).
* ``UTC``: :data:`datetime.timezone.utc` (``datetime.UTC`` is 3.11+).
"""

from __future__ import annotations

import datetime as _dt
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by scripts/test_python_versions.sh on 3.10
    import tomli as tomllib

UTC = _dt.timezone.utc

__all__ = ["UTC", "tomllib"]
