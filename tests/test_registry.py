"""The one registry primitive: lazy module:attr entries, duplicates, suggestions, broken plugins."""

from __future__ import annotations

import pytest

from prefixrft_cli.config import CHOICES, Config
from prefixrft_cli.errors import UserError
from prefixrft_cli.registry import PUBLIC, Registry
from prefixrft_cli.algorithms import ALGORITHMS


def test_lazy_target_loads_on_first_get():
    reg = Registry("thing")
    reg.register("join", "os.path:join")
    assert reg.entries["join"].loaded is None
    import os.path

    assert reg.get("join") is os.path.join


def test_duplicate_names_raise():
    reg = Registry("thing")
    reg.register("a", "os:getcwd")
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        reg.register("a", "os:getpid")


def test_unknown_name_suggests_and_lists():
    reg = Registry("verifier")
    for name in ("math", "code"):
        reg.register(name, "os:getcwd")
    with pytest.raises(UserError, match=r"unknown verifier 'maths' \(did you mean 'math'\?\); valid: code, math"):
        reg.get("maths")


def test_broken_plugin_is_reported_by_name_and_the_rest_still_work():
    reg = Registry("benchmark")
    reg.register("good", "os:getcwd")
    reg.register("broken", "no_such_module_xyz:Thing")
    reg.load_all()
    assert reg.names() == ["good"] and "ModuleNotFoundError" in reg.broken["broken"].error
    with pytest.raises(UserError, match=r"benchmark plugin 'broken' \(no_such_module_xyz:Thing from prefixrft\) failed to load: ModuleNotFoundError"):
        reg.get("broken")
    assert callable(reg.get("good"))


def test_builtins_come_through_the_entry_points():
    names = {group: reg.names() for group, reg in PUBLIC.items()}
    assert {"math", "code"} <= set(names["prefixrft.verifiers"])
    assert {"dataset", "model", "toy"} <= set(names["prefixrft.demonstrators"])
    assert {"toy-math", "toy-code", "aime24", "math500", "humaneval+", "mbpp+"} <= set(names["prefixrft.benchmarks"])
    assert PUBLIC["prefixrft.verifiers"].entries["math"].distribution == "prefixrft"


def test_every_algorithm_choice_has_a_step_function():
    # sft-then-rft is a recipe of two stages (sft, then rft), not a step of its own
    assert set(ALGORITHMS.names()) | {"sft-then-rft"} == set(CHOICES["algo"])
    for name in ALGORITHMS.names():
        algorithm = ALGORITHMS.get(name)
        assert all(callable(a.step_fn()) for a, _ in algorithm.stage_plan(Config()))
