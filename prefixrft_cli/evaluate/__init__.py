"""Evaluation: score a policy on problems, run benchmarks into an eval folder, pass@k reports.

scoring.py        score_problems / score_batches: batched generation, verification overlapped
samples.py        the eval folder's samples.jsonl records
runner.py         `prefixrft eval`: benchmarks -> samples.jsonl (resumable) -> summary.json
passk_report.py   `prefixrft passk`: curves, passk.json, passk.png
entropy_view.py   `prefixrft inspect-entropy`: per-token entropy of demonstrations, tables, HTML
"""

from prefixrft_cli.evaluate.scoring import ScoredSample, ScoreReport, Timing, score_problems

__all__ = ["ScoreReport", "ScoredSample", "Timing", "score_problems"]
