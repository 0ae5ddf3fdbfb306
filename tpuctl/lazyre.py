"""Regular expressions compiled when first used, not when their module is imported.

Compiling one costs 40-80 µs here (the `re` compiler is Python); the modules a fast-path
command imports define about twenty and use one or two (docs/performance.md#the-fast-path).
`compile(p)` returns a stand-in that compiles `p` on its first attribute access and then
behaves as the compiled pattern (`.match`, `.fullmatch`, `.sub`, `.pattern`, ...).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from typing import Any


class _Lazy:
    __slots__ = ("_compiled", "_source")

    def __init__(self, source: str) -> None:
        self._source = source
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:
        compiled = self._compiled
        if compiled is None:
            import re

            compiled = self._compiled = re.compile(self._source)
        return getattr(compiled, name)

    def __repr__(self) -> str:
        return f"lazyre.compile({self._source!r})"


def compile(source: str) -> re.Pattern[str]:
    """`re.compile(source)` (no flags), done at first use."""
    return _Lazy(source)  # type: ignore[return-value]
