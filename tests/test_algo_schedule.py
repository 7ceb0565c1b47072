"""The prefix-length scheduler: low_t at t = 0, T/2, T for every scheduler, and the sampled L."""

from __future__ import annotations

import math

import pytest
import torch

from prefixrft_cli.algo.schedule import SCHEDULERS, prefix_len_low, sample_prefix_fractions

T = 100


@pytest.mark.parametrize(("scheduler", "expected"), [
    # cosine: 0.05 + 0.45·(1 + cos(π·t/T)) -> t=0: 0.05 + 0.45·2 = 0.95; T/2: 0.05 + 0.45·1 = 0.5; T: 0.05 + 0 = 0.05
    ("cosine", (0.95, 0.5, 0.05)),
    # linear: 0.95 − 0.9·t/T -> 0.95, 0.95 − 0.45 = 0.5, 0.05
    ("linear", (0.95, 0.5, 0.05)),
    # uniform: low_end at every step
    ("uniform", (0.05, 0.05, 0.05)),
    # fixed: the fixed fraction (default 0.5) whatever the step
    ("fixed", (0.5, 0.5, 0.5)),
])
def test_low_at_start_middle_end(scheduler: str, expected: tuple[float, float, float]) -> None:
    got = [prefix_len_low(scheduler, step, T) for step in (0, T // 2, T)]
    assert got == pytest.approx(expected, abs=1e-12)


def test_cosine_quarter_and_linear_quarter() -> None:
    # cosine at t = T/4: 0.05 + 0.45·(1 + cos(π/4)) = 0.05 + 0.45·1.7071068 = 0.8181981
    assert prefix_len_low("cosine", 25, 100) == pytest.approx(0.8181981, abs=1e-7)
    # linear at t = T/4: 0.95 − 0.9·0.25 = 0.725
    assert prefix_len_low("linear", 25, 100) == pytest.approx(0.725, abs=1e-12)
    # other bounds: high 0.8, low_end 0.2, cosine at T/2 -> 0.2 + 0.3·1 = 0.5
    assert prefix_len_low("cosine", 5, 10, high=0.8, low_end=0.2) == pytest.approx(0.5, abs=1e-12)
    assert prefix_len_low("fixed", 3, 10, fixed=0.3) == 0.3


def test_step_is_clamped_and_empty_schedule_is_finished() -> None:
    assert prefix_len_low("cosine", -5, 10) == pytest.approx(0.95)   # t clamped to 0
    assert prefix_len_low("cosine", 50, 10) == pytest.approx(0.05)   # t clamped to T
    assert prefix_len_low("linear", 50, 10) == pytest.approx(0.05)
    # T <= 0: t/T is taken as 1, the end of the schedule
    assert prefix_len_low("cosine", 0, 0) == pytest.approx(0.05)
    assert prefix_len_low("linear", 3, -1) == pytest.approx(0.05)


def test_unknown_scheduler_lists_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        prefix_len_low("cosin", 0, 10)
    for name in SCHEDULERS:
        assert name in str(err.value)
    with pytest.raises(ValueError):
        sample_prefix_fractions("exp", 0, 10, 3, torch.Generator().manual_seed(0))


def test_bad_bounds_are_rejected() -> None:
    with pytest.raises(ValueError):
        prefix_len_low("cosine", 0, 10, high=0.3, low_end=0.5)
    with pytest.raises(ValueError):
        prefix_len_low("fixed", 0, 10, fixed=1.5)


def test_sampled_fractions_lie_in_range_and_are_reproducible() -> None:
    gen = torch.Generator().manual_seed(1)
    fractions, low = sample_prefix_fractions("cosine", 50, 100, 4000, gen)
    assert low == pytest.approx(0.5)
    assert fractions.shape == (4000,) and fractions.dtype == torch.float32
    assert float(fractions.min()) >= 0.5 and float(fractions.max()) < 0.95
    # U(0.5, 0.95): mean 0.725, std 0.45/sqrt(12) = 0.1299, so the mean of 4000 is within ~0.002
    assert float(fractions.mean()) == pytest.approx(0.725, abs=0.01)
    again, _ = sample_prefix_fractions("cosine", 50, 100, 4000, torch.Generator().manual_seed(1))
    assert torch.equal(fractions, again)


def test_fixed_fractions_are_constant_and_draw_nothing() -> None:
    gen = torch.Generator().manual_seed(3)
    fractions, low = sample_prefix_fractions("fixed", 7, 10, 5, gen, fixed=0.3)
    assert low == 0.3
    assert torch.equal(fractions, torch.full((5,), 0.3, dtype=torch.float32))
    # the generator was not advanced
    assert torch.equal(torch.rand(2, generator=gen), torch.rand(2, generator=torch.Generator().manual_seed(3)))


def test_uniform_fractions_span_low_end_to_high_at_every_step() -> None:
    for step in (0, 500):
        fractions, low = sample_prefix_fractions("uniform", step, 500, 2000, torch.Generator().manual_seed(step))
        assert low == pytest.approx(0.05)
        assert float(fractions.min()) >= 0.05 and float(fractions.max()) < 0.95
        assert float(fractions.min()) < 0.1 and float(fractions.max()) > 0.9   # the whole range is used
    assert math.isclose(prefix_len_low("uniform", 0, 500), prefix_len_low("uniform", 500, 500))
