"""Built-in verifiers, registered as `math` and `code` under the entry-point group `prefixrft.verifiers`.

- math: math.py (extraction, fast path, MathVerifier), math_worker.py (math-verify in a
  helper process), workers.py (helper processes with a deadline per task);
- code: code.py (CodeVerifier), sandbox.py / sandbox_runner.py / sandbox_view.py /
  sandbox_child.py (the sandbox: runner, isolation, the job's own script), asserts.py and
  assert_rounds.py (assert tests split into probes and clean checks), evalplus_rules.py
  (evalplus' judging rules), values.py (values across the sandbox boundary);
- framing.py: the JSON messages all of them exchange over pipes.
Docs: docs/plugins.md, docs/security.md. Tests: tests/test_verify_*.py.
"""
