"""Plain Python values to JSON and back, so a sandboxed child can report what a function returned.

`encode` runs inside the sandbox on whatever untrusted code returned; `decode` runs in the
verifier on what the child sent. Only builtin value types cross: None, bool, int, float,
str, complex, bytes, list, tuple, set, frozenset, dict (plus OrderedDict, defaultdict and
Counter, which compare like dicts) and numpy scalars (as the Python number they hold). An
object of any other class, or a subclass, is refused: its `__eq__` could say anything.
`decode` never executes code; malformed input raises `ValueError`.

A value with more than DIGEST_ABOVE items (strings count one item per 16 characters), or
whose JSON text exceeds DIGEST_ABOVE_CHARS characters (1 MiB of UTF-8 at most), travels as a SHA-256 `Digest` of a canonical
form instead (sets and dicts sorted), so a gigabyte-sized output costs a hash, not a
transfer, and every honest frame stays far below the runner's frame cap. Equal digests mean equal values of
equal types; values that are equal only across types (1 == 1.0) or within a float
tolerance do not match as digests.

Containers are tagged JSON arrays: ["L", ...] list, ["T", ...] tuple, ["S", ...] set,
["F", ...] frozenset, ["D", [k, v], ...] dict, ["O", [k, v], ...] OrderedDict,
["C", re, im] complex, ["B", hex] bytes, ["I", hex] an int too long for JSON's decimal
form (Python refuses to parse more than 4300 digits). Floats keep NaN and ±Infinity.

The sandbox child imports this module into a fresh interpreter for every job, so it loads
nothing it can do without: JSON text is written by the C encoder behind `json.dumps`
(`to_json`), `json` is imported only by the functions the verifier calls, and Counter is
recognised once `collections` is loaded (no Counter exists before). That saves about
20 ms of start-up per job. Test: tests/test_verify_values.py.
"""

from __future__ import annotations

import sys
from _collections import OrderedDict, defaultdict   # what collections exports, without importing it

_BIG_INT = 1 << 512   # beyond this an int travels as hex (cheap both ways, no digit limit)
DIGEST_ABOVE = 200_000
DIGEST_ABOVE_CHARS = 1 << 18


class Unencodable(TypeError):
    """A value whose type may not cross the sandbox boundary."""


class Digest:
    """Stands for a value too large to send: equal digests, equal values (never equal to a plain value)."""

    __slots__ = ("sha256",)

    def __init__(self, sha256: str):
        self.sha256 = sha256

    def __eq__(self, other: object) -> bool:
        return type(other) is Digest and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return f"Digest({self.sha256[:12]}...)"


def report(value: object) -> str:
    """The JSON frame for a probe's result: ["ok", encoded] or, for a large value, ["digest", hex]."""
    if not _more_items_than(value, DIGEST_ABOVE):
        text = to_json(["ok", encode(value)])
        if len(text) <= DIGEST_ABOVE_CHARS:
            return text
    return to_json(["digest", _digest_bytes(value).hex()])


def to_json(data: object) -> str:
    """JSON text of encoded data, as `json.dumps(data, allow_nan=True, ensure_ascii=False,
    separators=(",", ":"))` writes it."""
    if _C_ENCODER is None:
        import json

        return json.dumps(data, allow_nan=True, ensure_ascii=False, separators=(",", ":"))
    return "".join(_C_ENCODER(data, 0))


def _not_json(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON")


try:   # json.encoder's own fast path: (markers, default, quote, indent, key sep, item sep, sort, skip, allow_nan)
    from _json import encode_basestring as _quote, make_encoder as _make_encoder

    _C_ENCODER = _make_encoder(None, _not_json, _quote, None, ":", ",", False, False, True)
except (ImportError, TypeError):   # another Python: json.dumps
    _C_ENCODER = None


def _counter() -> type | None:
    """collections.Counter once collections is loaded (before that, no value can be a Counter)."""
    return getattr(sys.modules.get("collections"), "Counter", None)


def _is_mapping(kind: type) -> bool:
    return kind is dict or kind is defaultdict or kind is OrderedDict or kind is _counter()


_SCALARS = frozenset({int, float, str, bool, type(None)})
_SEQUENCES = (list, tuple, set, frozenset)


def _more_items_than(value: object, limit: int) -> bool:
    """Whether `value` holds more than `limit` items (a string counts one per 16 characters)."""
    stack, count = [value], 0
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bytes:
            count += 1 + len(item) // 16
        elif kind in _SEQUENCES or _is_mapping(kind):
            count += 1 + len(item)
            if count > limit:
                return True
            members = item if kind in _SEQUENCES else (*dict.keys(item), *dict.values(item))
            stack.extend(x for x in members if type(x) not in _SCALARS or type(x) is str and len(x) >= 16)
        else:
            count += 1
        if count > limit:
            return True
    return False


def _feed(sha: object, value: object) -> None:
    """Hash a canonical form of `value` (exact types; sets and dict entries sorted by their own digest)."""
    kind = type(value)
    if value is None or kind is bool:
        sha.update(repr(value).encode())
    elif kind is int:
        sha.update(b"i" + format(value, "x").encode() + b";")
    elif kind is float:
        sha.update(b"f" + value.hex().encode() + b";")
    elif kind is str or kind is bytes:
        data = value.encode("utf-8", "surrogatepass") if kind is str else value
        sha.update(b"%s%d:" % (b"s" if kind is str else b"b", len(data)) + data)
    elif kind is complex:
        sha.update(b"c" + value.real.hex().encode() + b"," + value.imag.hex().encode() + b";")
    elif kind is list or kind is tuple:
        sha.update(b"%s%d[" % (b"L" if kind is list else b"T", len(value)))
        if {type(item) for item in value} <= _SCALARS:
            # repr of exact ints, floats (round-trip exact), strings, bools and None is canonical
            sha.update(repr(value).encode("utf-8", "surrogatepass"))
        else:
            for item in value:
                _feed(sha, item)
        sha.update(b"]")
    elif kind is set or kind is frozenset or _is_mapping(kind):
        if kind in (set, frozenset):
            parts = sorted(_digest_bytes(item) for item in value)
        elif kind is OrderedDict:
            parts = [_digest_bytes(k) + _digest_bytes(v) for k, v in dict.items(value)]
        else:
            parts = sorted(_digest_bytes(k) + _digest_bytes(v) for k, v in dict.items(value))
        tag = b"S" if kind in (set, frozenset) else b"O" if kind is OrderedDict else b"D"
        sha.update(b"%s%d{" % (tag, len(parts)) + b"".join(parts) + b"}")
    else:
        raise Unencodable(f"cannot report a value of type {kind.__module__}.{kind.__qualname__}")


def _digest_bytes(value: object) -> bytes:
    import hashlib   # here, not at the top: the sandbox child starts faster without it

    sha = hashlib.sha256()
    _feed(sha, value)
    return sha.digest()


def encode(value: object) -> object:
    """A JSON-ready form of `value`; raises Unencodable for a type outside the list above."""
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is float:
        return value
    if kind is int:
        return value if -_BIG_INT < value < _BIG_INT else ["I", format(value, "x")]
    if kind is list:
        return ["L", *map(encode, value)]
    if kind is tuple:
        return ["T", *map(encode, value)]
    if kind is set or kind is frozenset:
        return ["S" if kind is set else "F", *map(encode, value)]
    if _is_mapping(kind):
        tag = "O" if kind is OrderedDict else "D"
        return [tag, *([encode(k), encode(v)] for k, v in dict.items(value))]
    if kind is complex:
        return ["C", value.real, value.imag]
    if kind is bytes:
        return ["B", value.hex()]
    numpy = sys.modules.get("numpy")
    if numpy is not None and kind in (numpy.float64, numpy.float32, numpy.int64, numpy.int32, numpy.bool_):
        return encode(value.item())
    raise Unencodable(f"cannot report a value of type {kind.__module__}.{kind.__qualname__}")


def dumps(value: object) -> str:
    """`encode` then JSON text."""
    import json

    return json.dumps(encode(value), allow_nan=True, separators=(",", ":"))


def canonical_dumps(value: object) -> str:
    """`dumps` with set members in sorted order: equal values give equal text in every process."""
    import json

    return json.dumps(_sorted_sets(encode(value)), allow_nan=True, separators=(",", ":"))


def _sorted_sets(data: object) -> object:
    if not isinstance(data, list) or not data or data[0] in ("C", "B", "I"):
        return data
    items = [_sorted_sets(item) for item in data[1:]] if data[0] in ("L", "T", "S", "F") else \
        [[_sorted_sets(k), _sorted_sets(v)] for k, v in data[1:]]
    if data[0] in ("S", "F"):
        import json

        items.sort(key=lambda item: json.dumps(item, allow_nan=True))
    return [data[0], *items]


def decode(data: object) -> object:
    """The Python value an `encode` form stands for; ValueError on anything malformed."""
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if not isinstance(data, list) or not data or data[0] not in _DECODERS:
        raise ValueError(f"not an encoded value: {str(data)[:60]}")
    try:
        return _DECODERS[data[0]](data[1:])
    except (TypeError, ValueError, RecursionError, OverflowError, MemoryError) as err:
        raise ValueError(f"malformed encoded {data[0]}: {type(err).__name__}") from None


def loads(text: str) -> object:
    """JSON text (from `dumps`) to the value; ValueError when malformed."""
    import json

    try:
        data = json.loads(text)
    except (ValueError, RecursionError, MemoryError) as err:   # ValueError: also an int over 4300 digits
        raise ValueError(f"malformed JSON value: {type(err).__name__}") from None
    return decode(data)


def _pairs(items: list) -> list[tuple[object, object]]:
    pairs = []
    for item in items:
        if not isinstance(item, list) or len(item) != 2:
            raise ValueError("a dict entry must be [key, value]")
        pairs.append((decode(item[0]), decode(item[1])))
    return pairs


def _number(x: object) -> float:
    if type(x) not in (int, float):
        raise ValueError("complex parts must be numbers")
    return x


def _hex_int(items: list) -> int:
    if len(items) != 1 or not isinstance(items[0], str):
        raise ValueError("a big int is one hex string")
    return int(items[0], 16)


def _bytes(items: list) -> bytes:
    if len(items) != 1 or not isinstance(items[0], str):
        raise ValueError("bytes are one hex string")
    return bytes.fromhex(items[0])


def _complex(items: list) -> complex:
    if len(items) != 2:
        raise ValueError("a complex is [re, im]")
    return complex(_number(items[0]), _number(items[1]))


_DECODERS = {
    "L": lambda items: [decode(x) for x in items],
    "T": lambda items: tuple(decode(x) for x in items),
    "S": lambda items: {decode(x) for x in items},
    "F": lambda items: frozenset(decode(x) for x in items),
    "D": lambda items: dict(_pairs(items)),
    "O": lambda items: OrderedDict(_pairs(items)),
    "C": _complex,
    "B": _bytes,
    "I": _hex_int,
}
