"""Evaluation: scoring problems with a policy and a verifier, eval runs over benchmarks, pass@k reports."""
