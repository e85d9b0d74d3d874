"""One check shared by the tests that claim two ways of grounding give the same answer (a cache, a reused
pass, a shared prefix): the existence answer, both relevance maps, the span, the track and the boxes."""

from __future__ import annotations

import numpy as np
import pytest


def assert_same_grounding(a, b, *, atol: float = 0.0, box_atol: float = 0.0) -> None:
    """``a`` equals ``b`` exactly (the default), or within ``atol`` on scores and maps and ``box_atol`` pixels
    on boxes (paths whose arithmetic differs in order)."""
    if atol == 0.0:
        assert a.p_yes == b.p_yes
    else:
        assert a.p_yes == pytest.approx(b.p_yes, abs=atol)
    np.testing.assert_allclose(a.relevance.spatial, b.relevance.spatial, rtol=0, atol=atol)
    np.testing.assert_allclose(a.relevance.temporal, b.relevance.temporal, rtol=0, atol=atol)
    assert (a.start, a.end, a.found, a.track_id) == (b.start, b.end, b.found, b.track_id)
    assert a.boxes.keys() == b.boxes.keys()
    for s in a.boxes:
        np.testing.assert_allclose(a.boxes[s], b.boxes[s], rtol=0, atol=box_atol)
