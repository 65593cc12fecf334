"""Patch: field operations applied at commit, to whatever value the record has
then, so that concurrent patches never conflict (see :meth:`Store.patch`)."""

from typing import Any, List, Sequence, Tuple, Union

__all__ = ["Patch", "FieldPath"]

#: A field: one name, or a sequence of names for a nested field (empty: the
#: whole value, for ``set`` and ``merge``).
FieldPath = Union[str, Sequence[str]]


def _path(field: FieldPath) -> Tuple[str, ...]:
    if isinstance(field, str):
        return (field,)
    names = tuple(field)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(
                f"a field path holds names (str), not {type(name).__name__}: {field!r}"
            )
    return names


class Patch:
    """Operations on a record's value, applied in order at commit to the value
    the record has at that moment (a missing record starts as an empty dict).
    Each method adds one operation and returns the patch, so they chain::

        patch = (
            statelog.Patch()
            .set("status", "running")
            .add("stages_done", 1)
            .append("hosts", "node7", unique=True)
        )
        record = store.patch("jobs", "j1", patch)

    A field is one name, or a list of names for a nested field
    (``["limits", "cpu"]``); missing dicts on the way are created.
    """

    __slots__ = ("_ops",)

    def __init__(self) -> None:
        self._ops: List[Tuple[str, Tuple[str, ...], Any]] = []

    @property
    def operations(self) -> List[Tuple[str, Tuple[str, ...], Any]]:
        """The operations, in order: ``(name, field path, argument)``."""
        return list(self._ops)

    def set(self, field: FieldPath, value: Any) -> "Patch":
        """Sets ``field`` to ``value`` (the whole value for an empty path)."""
        self._ops.append(("set", _path(field), value))
        return self

    def remove(self, field: FieldPath) -> "Patch":
        """Removes ``field`` (nothing if it is missing)."""
        self._ops.append(("remove", _path(field), None))
        return self

    def add(self, field: FieldPath, by: Union[int, float] = 1) -> "Patch":
        """Adds ``by`` to the number at ``field``; a missing field counts as 0.
        Integers stay integers within 64 bits (an overflow fails the commit
        with ``PatchFailedError``); a float on either side gives a float."""
        if isinstance(by, bool) or not isinstance(by, (int, float)):
            raise TypeError(f"add needs an int or a float, not {by!r}")
        self._ops.append(("add", _path(field), by))
        return self

    def append(self, field: FieldPath, value: Any, *, unique: bool = False) -> "Patch":
        """Appends ``value`` to the list at ``field`` (a missing field becomes
        one); with ``unique=True``, only if the list holds no equal item."""
        self._ops.append(("append_unique" if unique else "append", _path(field), value))
        return self

    def merge(self, field: FieldPath, mapping: Any) -> "Patch":
        """Merges a dict into the dict at ``field`` (an empty path: the whole
        value): each member is set, and where both hold a dict the two are
        merged in turn."""
        self._ops.append(("merge", _path(field), mapping))
        return self

    def __len__(self) -> int:
        return len(self._ops)

    def __repr__(self) -> str:
        ops = ", ".join(f"{op}({list(path)!r}, {arg!r})" for op, path, arg in self._ops)
        return f"Patch({ops})"


Patch.__module__ = "statelog"
