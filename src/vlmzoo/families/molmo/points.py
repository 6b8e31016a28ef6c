"""Molmo's points: ``<point x="61.5" y="40.2" alt="cup">cup</point>`` and
``<points x1=".." y1=".." x2=".." y2=".." alt="..">..</points>``, coordinates in percent of the
image's width and height. Read as the official ``olmo/util.py`` ``extract_points`` reads these
tags (its pixel coordinates, a point with a coordinate over 100 dropped, also the compact
``p=123,456`` / ``1=123,456`` forms in tenths of a percent); its other patterns (``Click(x, y)``,
bare ``(x, y)``) belong to other datasets' answer formats, not to what Molmo writes.
"""

from __future__ import annotations

import re

from vlmzoo.tasks import Point

_TAG = re.compile(r"<points?\b([^>]*)>")
_XY = re.compile(r'x\d*="\s*([0-9]+(?:\.[0-9]+)?)"\s+y\d*="\s*([0-9]+(?:\.[0-9]+)?)"')
_COMPACT = re.compile(r"(?:\d+|p)\s*=\s*([0-9]{3})\s*,\s*([0-9]{3})")
_ALT = re.compile(r'alt="([^"]*)"')


def parse_points(text: str, width: int, height: int, label: str = "") -> list[Point]:
    """The points of every point tag in ``text``, in pixels of a ``width`` x ``height`` image,
    labelled by the tag's ``alt`` (else ``label``)."""
    points = []
    for tag in _TAG.finditer(text):
        attrs = tag.group(1)
        alt = _ALT.search(attrs)
        name = alt.group(1) if alt else label
        pairs = [(float(x), float(y)) for x, y in _XY.findall(attrs)]
        pairs += [(int(x) / 10.0, int(y) / 10.0) for x, y in _COMPACT.findall(attrs)]
        points += [Point(x / 100.0 * width, y / 100.0 * height, name) for x, y in pairs if max(x, y) <= 100]
    return points
