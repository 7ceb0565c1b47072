"""The helper process behind the math verifier: compares two answers with math-verify.

Run as `python -m prefixrft_plugins.verifiers.math_worker` by workers.TimedWorkers. It
reads {"gold": ..., "boxes": [...]} (the boxed answers of a response's final part, the
last one first in line) or {"gold": ..., "text": ..., "boxes": [...]} (a final part or final
statement without a box, and the boxes before it) and
answers {"ok": bool, "extracted": what was compared}, {"none": true} when math-verify
finds no answer in the text, or {"error": why} when the gold answer cannot be parsed.
Several boxes are also compared joined as one list when the gold is a set, tuple or
interval (`\\boxed{1}, \\boxed{2}` against `\\{1, 2\\}`). math-verify's own timeouts use
signal.alarm, which only works on a main thread and in older versions silently scores 0;
they are disabled here, and the pool kills a worker that overruns its deadline instead.

`check_answers` and `check_text` are also importable for tests. Boxed answers and the gold
are wrapped as `$\\boxed{...}$`, the form math-verify's LaTeX extraction reads most reliably
(gold answers given with their own `$...$` lose them first); a gold that does not parse
that way is parsed as written. A text without a box goes through math-verify's own LaTeX
and expression extraction, as `math_verify.parse` does by default. Test:
tests/test_verify_math.py, tests/test_verify_math_verify_cases.py.
"""

from __future__ import annotations

import logging
import os
import re
from functools import lru_cache

from prefixrft_plugins.verifiers.framing import read_message, write_message


_BARE = re.compile(r"[\w\s.,;:+\-*/=()<>%]*")


def boxed(answer: str) -> str:
    """`answer` as math-verify expects it: `$\\boxed{answer}$`, outer `$` removed first."""
    text = answer.strip()
    while len(text) >= 2 and text.startswith("$") and text.endswith("$") and not text.endswith("\\$"):
        text = text[1:-1].strip()
    return "$\\boxed{" + text + "}$"


@lru_cache(maxsize=1)
def _math_verify():
    import math_verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    boxed_first = [math_verify.LatexExtractionConfig(boxed_match_priority=0), math_verify.ExprExtractionConfig()]
    default = [math_verify.LatexExtractionConfig(), math_verify.ExprExtractionConfig()]
    return math_verify, boxed_first, default


@lru_cache(maxsize=4096)
def _parse(text: str, wrap: bool = True) -> tuple:
    math_verify, boxed_first, default = _math_verify()
    if wrap:
        return tuple(math_verify.parse(boxed(text), extraction_config=boxed_first, parsing_timeout=None))
    return tuple(math_verify.parse(text, extraction_config=default, parsing_timeout=None))


def _golds(gold: str) -> list[tuple]:
    """The readings of a gold answer: as written when it has its own delimiters ($, \\boxed, \\( ),
    boxed when it is LaTeX, and both when it is bare text (`1,22` is 1.22 to math-verify, {1, 22} boxed)."""
    gold = gold.strip()
    if any(mark in gold for mark in ("$", "\\boxed", "\\(", "\\[")):
        readings = [_parse(gold, wrap=False) or _parse(gold)]
    elif _BARE.fullmatch(gold):
        readings = [_parse(gold), _parse(gold, wrap=False)]
    else:
        readings = [_parse(gold) or _parse(gold, wrap=False)]
    return [reading for reading in readings if reading]


def _equal(golds: list[tuple], pred: tuple) -> bool:
    math_verify = _math_verify()[0]
    return bool(pred) and any(math_verify.verify(list(gold), list(pred), timeout_seconds=None) for gold in golds)


def _is_collection(value: object) -> bool:
    import sympy

    return isinstance(value, (sympy.Set, sympy.Tuple, list, tuple))


def check_answers(gold: str, pred: str, boxes: tuple[str, ...] = ()) -> dict:
    """{"ok", "extracted"}: whether `pred` (or, for a set-like gold, `boxes` joined) equals `gold`;
    {"error": why} when the gold cannot be parsed."""
    golds = _golds(gold)
    if not golds:
        return {"error": f"math-verify cannot parse the gold answer {gold[:80]!r}"}
    if _equal(golds, _parse(pred)):
        return {"ok": True, "extracted": pred}
    if len(boxes) > 1 and any(_is_collection(reading[0]) for reading in golds):
        joined = ", ".join(boxes)
        if _equal(golds, _parse(joined)):
            return {"ok": True, "extracted": joined}
    return {"ok": False, "extracted": pred}


def check_text(gold: str, text: str, boxes: tuple[str, ...] = ()) -> dict:
    """Like check_answers for a final statement without a box: math-verify finds the answer in
    `text`; when it finds none there, the `boxes` before it answer (if any)."""
    golds = _golds(gold)
    if not golds:
        return {"error": f"math-verify cannot parse the gold answer {gold[:80]!r}"}
    pred_parsed = _parse(text, wrap=False)
    if not pred_parsed:
        return check_answers(gold, boxes[-1], boxes) if boxes else {"none": True}
    return {"ok": _equal(golds, pred_parsed), "extracted": str(pred_parsed[-1])[:500]}


def main() -> None:
    in_fd, out_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)   # stray prints go to stderr, never into the answers
    _math_verify()
    write_message(out_fd, {"ready": True})
    while (task := read_message(in_fd)) is not None:
        try:
            boxes = tuple(str(box) for box in task.get("boxes", ()))
            if "text" in task:
                answer = check_text(str(task["gold"]), str(task["text"]), boxes)
            else:
                answer = check_answers(str(task["gold"]), boxes[-1], boxes)
        except Exception as err:  # math-verify raising is an answer too, not a reason to die
            answer = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
        write_message(out_fd, answer)


if __name__ == "__main__":
    main()
