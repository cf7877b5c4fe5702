"""Doctest collection for the core package (``--doctest-modules`` over ``models/``).

A module that runs compiled (``models._native``) has no docstrings to test and is not the
source file pytest would collect; its doctests run against the source in
``tests/models/test_native.py`` instead, and the compiled code is checked against the same
source there, value for value.
"""

from models._native import COMPILED_SOURCES, core_kind

collect_ignore = [rel.removeprefix("models/") for rel in COMPILED_SOURCES] if core_kind() == "compiled" else []
