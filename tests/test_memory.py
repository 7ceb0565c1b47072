"""The update's memory levers: the single-update shortcut back-propagates every bucket whose
token weights no selection can change right after its forward (rows with selection candidates
bucketed last, so few graphs wait for the selection), and the heap is trimmed after the update.

The loss and gradients of the shortcut against one forward of the whole batch are pinned in
tests/test_train_step.py (test_bucketed_update_trains_as_one_forward_of_the_whole_batch).
"""

from __future__ import annotations

import sys

import pytest
import torch
from test_train_step import PAD, Recorder, config, prefix_batch, rft_batch, tiny_model, weights  # noqa: F401

from prefixrft_cli.algorithms import get_algorithm
from prefixrft_cli.config import selection_of
from prefixrft_cli.train import packing
from prefixrft_cli.train.backend import single_process
from prefixrft_cli.train.packing import Sequences
from prefixrft_cli.train.setup import trim_heap
from prefixrft_cli.train.step import rl_update


def test_rows_in_last_are_bucketed_after_the_others_in_as_many_buckets():
    seqs = Sequences([[2]] * 6, [[5] * n for n in (6, 1, 5, 2, 4, 3)], [0] * 6, PAD)
    plain = [b.rows.tolist() for b in seqs.buckets(list(range(6)), 2, torch.device("cpu"))]
    apart = [b.rows.tolist() for b in seqs.buckets(list(range(6)), 2, torch.device("cpu"), last={0, 4})]
    assert plain == [[1, 3], [5, 4], [2, 0]]          # by length
    assert apart == [[1, 3], [5, 2], [4, 0]]          # by length, 0 and 4 after the rest


class Counting:
    """The one-process backend, counting backward calls and the graphs alive at each."""

    def __init__(self):
        self.inner, self.calls = single_process(), []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def backward(self, model, loss):
        self.calls.append(float(loss.detach()))
        self.inner.backward(model, loss)


@pytest.mark.parametrize("algo, batch_of, mode, backwards", [
    ("rft", rft_batch, "top", 3),                 # no candidates: each of 3 buckets back-propagated after its forward
    ("prefix-rft", prefix_batch, "top", 3),       # 2 at once; the 2 hybrid rows' bucket waits for the selection
    ("rft", rft_batch, "onpolicy-clip", 1),       # every row has candidates: one backward after all forwards
])
def test_the_shortcut_keeps_only_the_graphs_the_selection_needs(weights, monkeypatch, algo, batch_of, mode,
                                                                 backwards):
    monkeypatch.setattr(packing, "AUTO_BUCKET_ROWS", 3)   # 8 rows: buckets of 3, 3, 2
    cfg = config(f"algo={algo}", f"selection.mode={mode}", "selection.keep_ratio=0.4")
    model, counting = tiny_model(weights), Counting()
    optimizer = Recorder(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0)
    stats = rl_update(model, None, optimizer, scheduler, batch_of(), cfg, PAD, torch.Generator().manual_seed(0),
                      get_algorithm(cfg.algo).weighting(selection_of(cfg)), counting)
    assert len(counting.calls) == backwards and stats.updates == 1
    assert stats.loss == pytest.approx(sum(counting.calls), rel=1e-6, abs=1e-8)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_heap_is_trimmed_on_glibc():
    assert trim_heap() is True
