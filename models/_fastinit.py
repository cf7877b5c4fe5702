"""Copy and pickle support for the dataclasses of the core, compiled or not.

The per-tick value classes (:class:`~models.features.Features`,
:class:`~models.detectors.statistical.StatResult`, :class:`~models.ticks.Tick`,
:class:`~models.pipeline.Position`) write their ``__init__`` out instead: mypyc compiles a
written-out constructor to C, while the one ``dataclasses`` generates stays interpreted Python
(mypyc issue 817), which cost 3.5 us a tick for ``Features`` alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def field_values(obj: Any) -> tuple[Any, ...]:
    """A dataclass instance's field values in field order: what its ``__reduce__`` rebuilds it from.

    The dataclasses of the core define ``__reduce__`` as ``(cls, field_values(self))``.
    Compiled by mypyc (:mod:`models._native`), the default copy and pickle path restores an
    instance field by field through ``setattr``, which a frozen class refuses; calling the
    constructor works the same compiled or not.

    >>> @dataclasses.dataclass(frozen=True)
    ... class P:
    ...     x: float
    ...     y: float
    >>> field_values(P(1.0, 2.0))
    (1.0, 2.0)
    """
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))
