"""selection.mode parsed once into a typed choice; the one mode list; algorithms' token weighting."""

from __future__ import annotations

import pytest

from prefixrft_cli.algo.selection import SELECTION_MODES, WHOLE_PREFIX, Selection, parse_selection
from prefixrft_cli.algorithms import ALGORITHMS, get_algorithm
from prefixrft_cli.config import CHOICES, Config, load_config
from prefixrft_cli.errors import UserError


@pytest.mark.parametrize("text, expected", [
    ("top", Selection("prefix", "top")), ("bottom", Selection("prefix", "bottom")),
    ("random", Selection("prefix", "random")), ("all", Selection("prefix", "all")),
    ("none", Selection("prefix", "none")),
    ("onpolicy-clip", Selection("on-policy", "top")),       # the paper's control: top entropy among RFT tokens
    ("static:0.5", Selection("prefix", "none", 0.5)),       # no prefix advantage; 0.5 · SFT loss instead
    ("static:0", Selection("prefix", "none", 0.0)),
])
def test_each_user_string_has_one_typed_choice(text: str, expected: Selection):
    assert parse_selection(text) == expected


@pytest.mark.parametrize("text", ["Top", "static:", "static:-1", "static:x", "onpolicy", ""])
def test_other_strings_are_not_selections(text: str):
    with pytest.raises(ValueError, match="unknown selection mode"):
        parse_selection(text)


def test_the_one_mode_list_is_what_the_config_error_shows():
    assert SELECTION_MODES == ("top", "bottom", "random", "all", "none", "onpolicy-clip", "static:W")
    with pytest.raises(UserError, match="valid: top, bottom, random, all, none, onpolicy-clip, static:W"):
        load_config(None, ["selection.mode=tops"])


def test_weighting_follows_the_record():
    top = parse_selection("top")
    assert get_algorithm("prefix-rft").weighting(top).selection == top
    luffy = get_algorithm("luffy").weighting(top)          # LUFFY keeps every demonstration token
    assert (luffy.selection, luffy.luffy_shaping, luffy.sft_term) == (WHOLE_PREFIX, True, False)
    assert get_algorithm("rft-sft-loss").weighting(top).sft_term is True


def test_records_say_what_each_algorithm_is():
    table = {name: (ALGORITHMS.get(name).rollouts, ALGORITHMS.get(name).needs_demos) for name in CHOICES["algo"]}
    assert table == {"prefix-rft": ("hybrid", True), "rft": ("on-policy", False), "sft": ("none", True),
                     "rft-sft-loss": ("on-policy", True), "luffy": ("whole-demo", True),
                     "sft-then-rft": ("on-policy", True), "drpo": ("shared-prefix", True),
                     "relift": ("on-policy", True)}
    cfg = Config()
    stages = [(a.name, steps) for a, steps in get_algorithm("sft-then-rft").stage_plan(cfg)]
    assert stages == [("sft", cfg.train.sft_steps), ("rft", cfg.train.steps)]
