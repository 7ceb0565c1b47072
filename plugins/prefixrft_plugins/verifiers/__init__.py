"""Built-in verifiers, registered as `math` and `code` under the entry-point group `prefixrft.verifiers`.

- math: math.py (extraction, fast path, MathVerifier), math_worker.py (math-verify in a
  helper process), workers.py (helper processes with a deadline per task);
- code: code.py (CodeVerifier), sandbox.py / sandbox_runner.py (the sandbox), asserts.py
  (assert tests split into probes and checks), evalplus_rules.py (evalplus' judging
  rules), values.py (values across the sandbox boundary);
- framing.py: the JSON messages all of them exchange over pipes.
Docs: docs/plugins.md. Tests: tests/test_verify_*.py.
"""
