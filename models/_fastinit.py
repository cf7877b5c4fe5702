"""Cheap positional constructors for the frozen, slotted dataclasses built once per tick.

A frozen dataclass's generated ``__init__`` sets every field through ``object.__setattr__``
(a lookup of ``object.__setattr__`` plus a call per field, because the class's own
``__setattr__`` refuses). :class:`~models.features.Features` (22 fields) and
:class:`~models.detectors.statistical.StatResult` are built for every tick, and that
overhead was a measurable share of a tick's cost.

:func:`fast_constructor` generates, as ``dataclasses`` does for ``__init__``, a function
that allocates the instance and stores each field through its slot descriptor directly. The
result is the same object as ``cls(*values)``: same class, same slots, same values; ``==``,
``hash``, ``repr``, ``dataclasses.replace`` and immutability are unchanged. ``make`` takes
every field (defaults are never applied). It only applies to classes whose ``__init__`` does
nothing but store its arguments (no ``__post_init__``, ``InitVar``, ``kw_only`` or
``init=False`` field): anything else is refused when the module is imported, not mis-built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def fast_constructor(cls: type[T]) -> Callable[..., T]:
    """``make(*values)`` equal to ``cls(*values)`` (positional, every field, in field order).

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True, slots=True)
    ... class P:
    ...     x: float
    ...     y: float
    >>> make = fast_constructor(P)
    >>> make(1.0, 2.0) == P(1.0, 2.0), type(make(1.0, 2.0)) is P
    (True, True)

    A class compiled by mypyc (see :mod:`models._native`) is returned as it is: its constructor
    is already a C function that stores the fields directly.
    """
    if "__mypyc_attrs__" in cls.__dict__:
        return cls
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: fast_constructor needs a slotted dataclass")
    fields = dataclasses.fields(cls)
    # Defaults do not matter: make() takes every field, so it never applies one.
    plain = all(f.init and not f.kw_only for f in fields)
    # __dataclass_fields__ also lists InitVar (and ClassVar) pseudo-fields, which fields() leaves out.
    if not plain or hasattr(cls, "__post_init__") or len(cls.__dataclass_fields__) != len(fields):  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}: fast_constructor needs init, positional fields (no InitVar, "
                        "kw_only, init=False) and no __post_init__")
    names = [f.name for f in fields]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    # The slot (member) descriptors: their __set__ stores the value with no frozen check.
    namespace.update({f"_set_{name}": cls.__dict__[name].__set__ for name in names})
    body = "".join(f"    _set_{name}(obj, {name})\n" for name in names)
    source = f"def make({', '.join(names)}):\n    obj = _new(_cls)\n{body}    return obj\n"
    exec(source, namespace)  # noqa: S102 - generated from the field names only, as dataclasses does
    make: Callable[..., T] = namespace["make"]
    make.__qualname__ = make.__name__ = f"new_{cls.__name__}"
    make.__doc__ = f"Positional constructor of {cls.__name__}, equal to {cls.__name__}(*values) (models._fastinit)."
    return make


def field_values(obj: Any) -> tuple[Any, ...]:
    """A dataclass instance's field values in field order: what its ``__reduce__`` rebuilds it from.

    The frozen dataclasses of the core define ``__reduce__`` as ``(cls, field_values(self))``.
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
