"""The helper process behind the math verifier: compares two answers with math-verify.

Run as `python -m prefixrft_plugins.verifiers.math_worker` by workers.TimedWorkers. It
reads {"gold": ..., "pred": ...} messages and answers {"ok": bool} (or {"error": why}
when the gold answer itself cannot be parsed). math-verify's own timeouts use
signal.alarm, which only works on a main thread and in older versions silently scores 0;
they are disabled here, and the pool kills a worker that overruns its deadline instead.

`check_answers` is also importable for tests. Both answers are wrapped as `$\\boxed{...}$`,
the form math-verify's LaTeX extraction reads most reliably (gold answers given with their
own `$...$` lose them first). Test: tests/test_verify_math.py.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache

from prefixrft_plugins.verifiers.framing import read_message, write_message


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
    config = [math_verify.LatexExtractionConfig(boxed_match_priority=0), math_verify.ExprExtractionConfig()]
    return math_verify, config


@lru_cache(maxsize=4096)
def _parse(text: str) -> tuple:
    math_verify, config = _math_verify()
    return tuple(math_verify.parse(boxed(text), extraction_config=config, parsing_timeout=None))


def check_answers(gold: str, pred: str) -> dict:
    """{"ok": whether `pred` equals `gold`} or {"error": why} when the gold cannot be parsed."""
    math_verify, _ = _math_verify()
    gold_parsed = _parse(gold)
    if not gold_parsed:
        return {"error": f"math-verify cannot parse the gold answer {gold[:80]!r}"}
    pred_parsed = _parse(pred)
    if not pred_parsed:
        return {"ok": False}
    return {"ok": bool(math_verify.verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))}


def main() -> None:
    in_fd, out_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)   # stray prints go to stderr, never into the answers
    _math_verify()
    write_message(out_fd, {"ready": True})
    while (task := read_message(in_fd)) is not None:
        try:
            answer = check_answers(str(task["gold"]), str(task["pred"]))
        except Exception as err:  # math-verify raising is an answer too, not a reason to die
            answer = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
        write_message(out_fd, answer)


if __name__ == "__main__":
    main()
