"""Compact JSON for the connection daemon's wire and the worker cache, from the C codec the
`json` package itself is built on (`_json`), without importing `json`: its import compiles
six regular expressions (~0.9 ms of every fast-path command). Same text as
`json.dumps(obj, separators=(",", ":"))` and the same values as `json.loads`; errors are
`ValueError`s (json.JSONDecodeError) as there. Other Pythons: the json package."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _default(obj: object) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class _Context:
    """What the C scanner reads off a `json.JSONDecoder` (json.loads's defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity, as json.loads reads them
    memo: dict[str, str] = {}


_WS = " \t\n\r"
_encode: Any
_encode_spaced: Any
_scan: Any

try:
    import _json

    _encode = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None, ":",
                                 ",", False, False, True)
    _encode_spaced = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None,
                                        ": ", ", ", False, False, True)
    _scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
except (ImportError, AttributeError, TypeError):  # pragma: no cover - not CPython
    _encode = _encode_spaced = _scan = None


def dumps(obj: Any, *, spaced: bool = False) -> str:
    """`json.dumps(obj, separators=(",", ":"))`; `spaced`: `json.dumps(obj)`."""
    if _encode is None:  # pragma: no cover
        import json

        return json.dumps(obj) if spaced else json.dumps(obj, separators=(",", ":"))
    return "".join((_encode_spaced if spaced else _encode)(obj, 0))


def loads(text: str | bytes) -> Any:
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, start)
    except StopIteration as exc:
        import json

        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    if text[end:].strip(_WS):
        import json

        raise json.JSONDecodeError("Extra data", text, end)
    return obj
