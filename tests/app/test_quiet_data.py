"""app.quiet_data: the event-free rows of ``train --quiet-days``, built in several processes."""

from __future__ import annotations

import numpy as np
import pytest

from app.quiet_data import join, quiet_dataset
from models.pipeline import PipelineConfig
from models.synthetic import SymbolProfile

T0 = 1_700_000_000_000
PROFILES = [
    SymbolProfile("AAAUSDT", 50.0, 0.5, 2.0, True),
    SymbolProfile("BBBUSDT", 2.0, 0.3, 100.0, True),
    SymbolProfile("CCC/BTC", 3e-5, 0.1, 500.0, False),
]


def _by_symbol_time(x: np.ndarray, symbol: np.ndarray, t: np.ndarray, stat: np.ndarray) -> tuple[np.ndarray, ...]:
    order = np.lexsort((t, symbol.astype(str)))
    return x[order], symbol[order], t[order], stat[order]


def test_split_between_processes_gives_the_rows_of_one() -> None:
    kw = {"start_ms": T0, "duration_s": 2 * 3600.0, "seed": 3, "config": PipelineConfig()}
    one = quiet_dataset(PROFILES, processes=1, **kw)
    two = quiet_dataset(PROFILES, processes=2, **kw)
    assert len(one.y) > 1000 and not one.y.any() and one.windows == ()
    assert set(one.symbol.tolist()) == {p.symbol for p in PROFILES}
    for a, b in zip(_by_symbol_time(one.x, one.symbol, one.t, one.stat),
                    _by_symbol_time(two.x, two.symbol, two.t, two.stat), strict=True):
        np.testing.assert_array_equal(a, b)
    assert one.spans == two.spans
    assert (two.event == -1).all() and two.train.all()


def test_join_refuses_labelled_parts() -> None:
    kw = {"start_ms": T0, "duration_s": 1800.0, "seed": 3, "config": PipelineConfig()}
    part = quiet_dataset(PROFILES[:1], processes=1, **kw)
    assert len(join([part, part]).y) == 2 * len(part.y)
    labelled = type(part)(part.x, part.stat, part.y, part.t, part.symbol, part.train, ("w",), part.spans,  # type: ignore[arg-type]
                          part.event)
    with pytest.raises(ValueError, match="event-free"):
        join([part, labelled])


def test_regime_shifts_change_the_ticks_but_label_nothing() -> None:
    # A day, so that a shift fits after the warm-up hour and before the end on the liquid symbols.
    kw = {"start_ms": T0, "duration_s": 86_400.0, "seed": 5, "config": PipelineConfig(), "processes": 1}
    plain = quiet_dataset(PROFILES[:2], **kw)
    shifted = quiet_dataset(PROFILES[:2], regime_shifts_per_day=4.0, **kw)
    assert not shifted.y.any() and shifted.windows == () and (shifted.event == -1).all()
    # The hour before any shift can start is the same trading; after it, the regimes differ.
    warm = plain.t < T0 + 3_600_000
    assert warm.sum() == (shifted.t < T0 + 3_600_000).sum() > 0
    np.testing.assert_array_equal(plain.x[warm], shifted.x[shifted.t < T0 + 3_600_000])
    assert len(plain.y) != len(shifted.y)
