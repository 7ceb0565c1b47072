"""The value codec between the sandbox and the verifier: exact round trips, refusals, digests."""

from __future__ import annotations

import json
import math
from collections import Counter, OrderedDict, defaultdict

import pytest

from prefixrft_plugins.verifiers import values


@pytest.mark.parametrize("value", [
    None, True, False, 0, -7, 2 ** 600, -(3 ** 700), 1.5, "text\nwith ünïcode", b"\x00\xff",
    [1, [2, (3, "4")]], (), (1,), {1, 2, 3}, frozenset({"a"}), {"k": [1, 2], 3: (4, 5)}, 1 + 2j,
    [float("inf"), -float("inf")], OrderedDict([("b", 1), ("a", 2)]),
])
def test_round_trip_keeps_value_and_type(value) -> None:
    back = values.loads(values.dumps(value))
    assert back == value
    assert type(back) is type(value)


def test_dict_likes_travel_as_dicts_and_nan_survives() -> None:
    assert values.loads(values.dumps(defaultdict(int, {"a": 1}))) == {"a": 1}
    assert type(values.loads(values.dumps(Counter("aab")))) is dict
    assert math.isnan(values.loads(values.dumps(float("nan"))))


def test_subclasses_and_foreign_objects_are_refused() -> None:
    class Sneaky(int):
        def __eq__(self, other):  # would claim equality with anything
            return True

    class Anything:
        pass

    for value in (Sneaky(3), Anything(), [1, Anything()], {"k": Sneaky(1)}, range(3), print):
        with pytest.raises(values.Unencodable):
            values.encode(value)


@pytest.mark.parametrize("text", ['["Z", 1]', '["D", [1]]', '["C", "a", 1]', '["I", 5]', '{"a": 1}', '[', '["S", ["L"]]'])
def test_malformed_input_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        values.loads(text)


def test_large_values_travel_as_digests_that_compare_by_value() -> None:
    big = list(range(values.DIGEST_ABOVE + 1))
    frame = json.loads(values.report(big))
    assert frame[0] == "digest" and len(frame[1]) == 64
    assert json.loads(values.report(list(big))) == frame         # equal value, equal digest
    assert json.loads(values.report(big[:-1] + [-1])) != frame   # one item differs
    # sets hash in sorted order, so insertion order does not matter
    a = set(range(values.DIGEST_ABOVE + 5))
    b = set(reversed(range(values.DIGEST_ABOVE + 5)))
    assert values.report(a) == values.report(b)
    # small values are sent as they are
    assert values.report([1, 2]) == '["ok",["L",1,2]]'
    # a value with few items but a long JSON text (one 300,000-character string) is digested too
    assert json.loads(values.report("x" * 300_000))[0] == "digest"
    assert values.Digest("ab") != ("ab",) and values.Digest("ab") == values.Digest("ab")


@pytest.mark.parametrize("value", [
    [1, -2.5, "é\n\"q\"\x00", None, True], (float("nan"), float("-inf"), 1e300, -0.0), {3: (1, 2 ** 600)},
    {"a": [b"\x01", 2j]}, "\ud800", [[[]]] * 3,
])
def test_to_json_writes_what_json_dumps_writes(value) -> None:
    data = ["ok", values.encode(value)]
    assert values.to_json(data) == json.dumps(data, allow_nan=True, ensure_ascii=False, separators=(",", ":"))
