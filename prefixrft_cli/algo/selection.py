"""The token selection of `selection.mode`, parsed once into a typed choice.

    top | bottom | random | all | none   entropy selection among the prefix tokens (algo/entropy.py)
    onpolicy-clip                         the paper's control: the top-entropy selection among the
                                          on-policy tokens of plain RFT (prefix tokens untouched)
    static:W                              no prefix token keeps its advantage; each gets W · SFT loss
                                          instead (UFT-style), assembled by the training step

The user-facing strings stay as they are; `parse_selection` turns one into a `Selection`
that the step reads, so no mode string is compared below the config.
Test: tests/test_algo_selection.py.
"""

from __future__ import annotations

from dataclasses import dataclass

# The entropy selections of algo/entropy.py, and every selection.mode a user may write
# (in the order the error message lists them): the one mode list.
ENTROPY_MODES = ("top", "bottom", "random", "all", "none")
SELECTION_MODES = ENTROPY_MODES + ("onpolicy-clip", "static:W")


@dataclass(frozen=True)
class Selection:
    """Which tokens keep their advantage, and what the prefix gets instead."""

    candidates: str                      # "prefix" (demonstration tokens) | "on-policy" (onpolicy-clip)
    mode: str                            # an entropy mode among the candidates: top | bottom | random | all | none
    static_weight: float | None = None   # static:W: prefix tokens get W · SFT loss, no advantage

    @property
    def ranks_by_entropy(self) -> bool:
        """Whether choosing the kept tokens needs their entropies (top / bottom), not just their count."""
        return self.mode in ("top", "bottom")


def parse_selection(text: str) -> Selection:
    """The typed choice of one selection.mode string; ValueError when it is not one."""
    if text in ENTROPY_MODES:
        return Selection("prefix", text)
    if text == "onpolicy-clip":
        return Selection("on-policy", "top")
    head, _, weight = text.partition(":")
    try:
        value = float(weight)
    except ValueError:
        value = -1.0
    if head == "static" and value >= 0:
        return Selection("prefix", "none", value)
    raise ValueError(f"unknown selection mode {text!r}; valid: {', '.join(SELECTION_MODES)}")


# What every demonstration token gets under LUFFY: kept, whatever selection.mode says.
WHOLE_PREFIX = Selection("prefix", "all")
