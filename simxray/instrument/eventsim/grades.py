"""ACIS 3x3 event grading: ACIS flight grades (0-255) and ASCA grades (0-7).

The eight outer pixels of a 3x3 island carry the bits of the ACIS flight grade
(a pixel at or above the split threshold sets its bit)::

    32  64  128        UL  U  UR
     8   .   16   =     L  .   R
     1   2    4        DL  D  DR

ASCA grades (ASCA ABC guide, section 4.5.1; ACIS grading-scheme memo):
0 single; 1 single with detached corners; 2 vertical split; 3 left split;
4 right split (2-4 may carry detached corners); 5 single-sided split with a
corner touching the split pixel; 6 L-shaped or square (detached corners
allowed); 7 everything else.  X-ray (good) grades: 0, 2, 3, 4, 6.

Pulse height (ASCA convention): the centre plus the side pixels above the
split threshold, plus the corner between the two sides of a grade-6 event
when it is above threshold; other corners are never summed.
"""

from __future__ import annotations

import numpy as np

# (dy, dx) of each bit; y grows upward (U is +1)
BITS = {1: (-1, -1), 2: (-1, 0), 4: (-1, 1), 8: (0, -1), 16: (0, 1), 32: (1, -1), 64: (1, 0), 128: (1, 1)}
SIDES = {"D": 2, "L": 8, "R": 16, "U": 64}
CORNERS = {"DL": 1, "DR": 4, "UL": 32, "UR": 128}
GOOD_GRADES = (0, 2, 3, 4, 6)


def _touching(side: str) -> tuple[str, ...]:
    """Corners that share an edge with a side pixel."""
    return {"U": ("UL", "UR"), "D": ("DL", "DR"), "L": ("UL", "DL"), "R": ("UR", "DR")}[side]


def _classify(code: int) -> tuple[int, int]:
    """(ASCA grade, bitmask of outer pixels summed into the pulse height) for one flight grade."""
    sides = [s for s, b in SIDES.items() if code & b]
    corners = {c for c, b in CORNERS.items() if code & b}
    side_mask = sum(SIDES[s] for s in sides)
    if not sides:
        return (0 if not corners else 1), 0
    if len(sides) == 1:
        s = sides[0]
        if corners & set(_touching(s)):
            return 5, side_mask
        return {"U": 2, "D": 2, "L": 3, "R": 4}[s], side_mask
    if len(sides) == 2:
        a, b = sides
        vertical = {"U", "D"}
        if (a in vertical) == (b in vertical):  # opposite sides
            return 7, side_mask
        v, h = (a, b) if a in vertical else (b, a)
        between = v + h  # e.g. "UR"
        others = (set(_touching(v)) | set(_touching(h))) - {between}
        if corners & others:
            return 7, side_mask
        mask = side_mask + (CORNERS[between] if between in corners else 0)
        return 6, mask
    return 7, side_mask


ASCA_GRADE = np.zeros(256, dtype=np.int8)
PH_MASK = np.zeros(256, dtype=np.int16)
for _code in range(256):
    ASCA_GRADE[_code], PH_MASK[_code] = _classify(_code)


def asca_grade(flight_grade: np.ndarray) -> np.ndarray:
    """ASCA grade (0-7) of ACIS flight grades (0-255)."""
    return ASCA_GRADE[np.asarray(flight_grade, dtype=np.int64)]
