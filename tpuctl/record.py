"""Frozen records for the modules the fast path imports (tpuctl/cli/fast/).

`@record` does for a class what `@dataclass(frozen=True)` does for the uses tpuctl has: an
`__init__` taking the annotated fields positionally or by name (with their class-level
defaults), value equality, a hash, a repr, and no assignment after construction. It exists
because `dataclasses` imports `inspect` (and with it ast, dis and tokenize): about 6 ms of
every start, a third of what a warm `tpuctl exec` on a small slice may take
(docs/performance.md). No default factories: a default is shared, so it must be immutable.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from typing_extensions import dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_kw: object) -> object:
        return lambda fn: fn

_FIELDS = "__record_fields__"


class FrozenRecordError(AttributeError):
    """Assignment to a field of a record (as dataclasses' FrozenInstanceError)."""


def fields_of(obj: object) -> tuple[str, ...]:
    return tuple(getattr(obj, _FIELDS))


def as_dict(obj: object) -> dict[str, Any]:
    """The record's fields and values (shallow, unlike dataclasses.asdict)."""
    return {name: getattr(obj, name) for name in fields_of(obj)}


def _init_for(cls: type, names: tuple[str, ...], defaults: dict[str, object]
              ) -> Callable[..., None]:
    def __init__(self: object, *args: object, **kwargs: object) -> None:
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} arguments, "
                            f"{len(args)} given")
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key not in names or key in values:
                raise TypeError(f"{cls.__name__}() got an unexpected or repeated argument "
                                f"{key!r}")
            values[key] = value
        for name in names:
            if name in values:
                value = values[name]
            elif name in defaults:
                value = defaults[name]
            else:
                raise TypeError(f"{cls.__name__}() missing argument {name!r}")
            object.__setattr__(self, name, value)

    return __init__


def _values(self: object) -> tuple[object, ...]:
    return tuple(getattr(self, name) for name in fields_of(self))


def _eq(self: object, other: object) -> bool:
    if type(other) is not type(self):
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: object) -> int:
    return hash((type(self).__name__, _values(self)))


def _repr(self: object) -> str:
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in fields_of(self))
    return f"{type(self).__name__}({inner})"


def _frozen(self: object, name: str, value: object = None) -> None:
    raise FrozenRecordError(f"cannot assign to field {name!r} of a frozen record")


@dataclass_transform(frozen_default=True)
def record(cls: type[T]) -> type[T]:
    """Make `cls` a frozen record of its annotated fields (see the module's docstring)."""
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}
    seen_default = False
    for name in names:
        if name in defaults:
            seen_default = True
        elif seen_default:
            raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one "
                            "with a default")
    for name in defaults:
        delattr(cls, name)  # defaults live in __init__; an instance always has its own
    methods = {_FIELDS: names, "__init__": _init_for(cls, names, defaults), "__eq__": _eq,
               "__hash__": _hash, "__repr__": _repr, "__setattr__": _frozen,
               "__delattr__": _frozen, "__match_args__": names}
    for attr, value in methods.items():
        setattr(cls, attr, value)
    return cls
