"""The code verifier's parts: code extraction, assert splitting, evalplus rules, converters, verdicts."""

from __future__ import annotations

import pytest

from prefixrft_cli.data.evalplus import problem_from_evalplus, problem_from_mbpp_asserts
from prefixrft_cli.errors import UserError
from prefixrft_cli.records import CodeTests, Problem
from prefixrft_cli.toy_task import generate_problems
from prefixrft_plugins.verifiers import evalplus_rules as rules
from prefixrft_plugins.verifiers.asserts import plan_asserts
from prefixrft_plugins.verifiers.code import CodeVerifier, assemble_program, assemble_solution, extract_code
from prefixrft_plugins.verifiers.sandbox import SandboxLimits


@pytest.fixture(scope="module")
def verifier():
    v = CodeVerifier(workers=2, limits=SandboxLimits(memory_mb=1024), exec_seconds=2.0, assert_probe_seconds=2.0)
    yield v
    v.close()


def test_extract_code_prefers_the_fenced_block_defining_the_entry_point() -> None:
    text = "Plan:\n```python\ndef helper():\n    pass\n```\nThen\n```python\ndef f(x):\n    return x\n```\n```\nf(1)\n```"
    assert extract_code(text, "f") == "def f(x):\n    return x"
    assert extract_code("<think>```python\ndef f(): pass\n```</think>\ndef f():\n    return 2\n", "f") == \
        "\ndef f():\n    return 2\n"
    assert extract_code("```python\ndef f():\n    return 3\n", "f") == "def f():\n    return 3\n"  # unterminated
    assert extract_code("   \n", "f") == ""


def test_a_full_definition_runs_as_it_stands_and_a_body_continues_the_prompt() -> None:
    # evalplus: a `solution` runs as it stands, a `completion` is appended to the prompt
    tests = CodeTests(entry_point="f", prompt="def f(x):\n    \"\"\"doc\"\"\"\n", test_setup_code="X = 1")
    assert assemble_solution(tests, "def f(x):\n    return x\n") == ("def f(x):\n    return x\n", "as-is")
    assert assemble_program(tests, "def f(x):\n    return x\n") == "def f(x):\n    return x\n\nX = 1\n"
    assert assemble_solution(tests, "    return x\n") == ("def f(x):\n    \"\"\"doc\"\"\"\n    return x\n",
                                                        "prompt+completion")
    assert assemble_program(tests, "    return x\n") == "def f(x):\n    \"\"\"doc\"\"\"\n    return x\n\nX = 1\n"


def test_the_rule_that_applied_is_recorded_per_sample(verifier) -> None:
    # a full solution that uses `List` without importing it fails, as under evalplus; the
    # same body continuing the prompt (which imports it) passes
    problem = Problem("HumanEval/0-like", "?", code=CodeTests(
        entry_point="total", prompt="from typing import List\n\ndef total(xs: List[int]) -> int:\n",
        canonical_solution="    return sum(xs)\n", base_input=[[[1, 2]]], plus_input=[[[]]]))
    full = verifier.verify("```python\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n```", problem)
    body = verifier.verify("    return sum(xs)\n", problem)
    assert (full.reason, full.protocol, full.extracted) == ("wrong", "as-is", "def total(xs: List[int]) -> int:\n"
                                                            "    return sum(xs)")
    assert (body.reason, body.protocol) == ("correct", "prompt+completion")
    assert body.extracted == problem.code.prompt + "    return sum(xs)\n"


def test_asserts_split_into_candidate_probes_and_clean_checks() -> None:
    plan = plan_asserts(("assert add_7(5) == 12", "assert math.isclose(area(2), 12.56, rel_tol=0.01)",
                         "assert set(f(Pair(1, 2))) == set((4, 5))", "assert all(f(x) for x in range(2))"), "", "add_7")
    # the candidate sees only calls: never the expected values
    assert plan.probes == ("add_7(5)", "area(2)", "f(Pair(1, 2))")
    assert [c.source for c in plan.checks] == [
        "bool(__probe_0 == 12)", "bool(math.isclose(__probe_1, 12.56, rel_tol=0.01))",
        "bool(set(__probe_2) == set((4, 5)))", "bool(all((f(x) for x in range(2))))"]
    # a call on a comprehension variable: the whole assert is checked cleanly, `f` stubbed
    assert [c.stubs for c in plan.checks] == [(), (), (), ("add_7", "f", "x")]
    assert plan.modules == ("math",)
    with pytest.raises(ValueError, match="not a single assert"):
        plan_asserts(("x = 1",))


def test_mbpp_input_types_follow_evalplus() -> None:
    # Mbpp/2: every argument a tuple; Mbpp/124: float and complex; others untouched
    assert rules.typed_inputs(("mbpp", 2), [[[3, 4], [5]]]) == [[(3, 4), (5,)]]
    assert rules.typed_inputs(("mbpp", 124), [[1, "1+2j"]]) == [[1.0, 1 + 2j]]
    assert rules.typed_inputs(("mbpp", 115), [[[[1], []]]]) == [[[{1}, {}]]]
    assert rules.typed_inputs(("humaneval", 2), [[[3, 4]]]) == [[[3, 4]]]
    assert rules.evalplus_task("Mbpp/581") == ("mbpp", 581) and rules.evalplus_task("toy-1") is None


def test_group_passes_matches_evalplus_tolerances_and_oracles() -> None:
    same = dict(task=None, entry_point="f", args=[[0]])
    assert rules.group_passes(outputs=[3], expected=[3], atol=0, **same)
    assert not rules.group_passes(outputs=[3.0000001], expected=[3], atol=0, **same)    # int expected: exact
    # a float expected value forces atol 1e-6: |0.3000001 - 0.3| = 1e-7 <= 1e-6 + 1e-7 * 0.3
    assert rules.group_passes(outputs=[0.3000001], expected=[0.3], atol=0, **same)
    assert not rules.group_passes(outputs=[0.30001], expected=[0.3], atol=0, **same)    # 1e-5 > 1e-6
    assert not rules.group_passes(outputs=[[0.3]], expected=[(0.3,)], atol=1e-3, **same)  # type differs
    # HumanEval/32 find_zero: any root of 1 + 2x passes, x = -0.5 exactly
    assert rules.group_passes(("humaneval", 32), "find_zero", [[[1, 2]]], [-0.5], [-0.49], 1e-6)
    assert not rules.group_passes(("humaneval", 32), "find_zero", [[[1, 2]]], [-0.4], [-0.5], 1e-6)
    # Mbpp/2 compares as sets
    assert rules.group_passes(("mbpp", 2), "similar_elements", [[(1,), (1,)]], [(5, 4)], [(4, 5)], 0)
    # Mbpp/581: height, not slant height: base 3, height 4 -> 9 + 2*3*sqrt(2.25 + 16) = 34.62... -> 35
    assert rules.group_passes(("mbpp", 581), "surface_Area", [[3, 4]], [35], [33], 0)


def test_evalplus_converter_and_its_errors() -> None:
    record = {"task_id": "HumanEval/0", "prompt": "def f(x):\n", "entry_point": "f",
              "canonical_solution": "    return x\n", "base_input": [[1]], "plus_input": [], "atol": 0,
              "contract": "", "test": "ignored"}
    problem = problem_from_evalplus(record, "he.jsonl:1")
    assert (problem.id, problem.source, problem.code.base_input) == ("HumanEval/0", "humaneval+", [[1]])
    assert problem.demonstrations[0].text == "def f(x):\n    return x\n"
    for field, bad, message in [("base_input", 3, "he.jsonl:1: field 'base_input'"),
                                ("atol", "x", "he.jsonl:1: field 'atol'"), ("entry_point", "", "'entry_point'")]:
        with pytest.raises(UserError, match=message):
            problem_from_evalplus({**record, field: bad}, "he.jsonl:1")


def test_mbpp_assert_converter_reads_both_layouts() -> None:
    original = {"task_id": 2, "text": "Find shared items.", "code": "def similar(a, b):\r\n    return 1",
                "test_list": ["assert set(similar((1,), (1,))) == {1}"], "test_setup_code": ""}
    problem = problem_from_mbpp_asserts(original, "mbpp.jsonl:2")
    assert (problem.id, problem.code.entry_point, problem.code.canonical_solution) == \
        ("mbpp-2", "similar", "def similar(a, b):\n    return 1")
    assert "Your code should pass these tests" in problem.problem
    demo = {"id": "mbpp-601", "task_id": 601, "problem": "p", "demonstration": "def g():\n    return 1",
            "tests": ["assert g() == 1"], "test_setup_code": ""}
    assert problem_from_mbpp_asserts(demo, "d:1").id == "mbpp-601"
    with pytest.raises(UserError, match="d:1: field 'test_list'"):
        problem_from_mbpp_asserts({**demo, "tests": []}, "d:1")


def test_comprehension_asserts_are_answered_call_by_call(verifier) -> None:
    # `all(f(x) == ... for x in ...)` needs f at values only the check computes: the clean
    # check asks for them, the candidate answers, the check runs again
    tests = CodeTests(entry_point="sq", tests=["assert all(sq(x) == x * x for x in range(4))",
                                               "assert sorted(map(lambda v: sq(v), [3, 1])) == [1, 9]",
                                               "assert [sq(sq(x)) for x in (1, 2)] == [1, 16]"])
    problem = Problem("sq", "?", code=tests)
    assert verifier.verify("def sq(x):\n    return x * x\n", problem).reason == "correct"
    assert verifier.verify("def sq(x):\n    return x * x if x < 3 else 0\n", problem).reason == "wrong"
    assert verifier.verify("def sq(x):\n    raise ValueError\n", problem).reason == "wrong"


def test_set_up_code_built_from_the_solution_classes(verifier) -> None:
    # MBPP 927-style: the set-up builds objects of a class the solution defines; the clean
    # check process cannot run it, and does not need to
    tests = CodeTests(entry_point="depth", tests=["assert depth(root) == 2"],
                      test_setup_code="root = Node(Node(None))")
    good = "class Node:\n    def __init__(self, child):\n        self.child = child\n" \
           "def depth(node):\n    return 0 if node is None else 1 + depth(node.child)\n"
    assert verifier.verify(good, Problem("n", "?", code=tests)).reason == "correct"
    assert verifier.verify(good.replace("1 + depth", "2 + depth"), Problem("n", "?", code=tests)).reason == "wrong"


def test_toy_code_verdicts(verifier) -> None:
    problems = generate_problems("code", 8, seed=3)
    good = [p.demonstrations[0].text for p in problems]
    results = verifier.verify_batch(good + ["def nothing():\n    pass\n", ""], problems + problems[:2])
    assert [r.reason for r in results] == ["correct"] * 8 + ["wrong", "no_answer"]
    assert results[0].extracted == good[0] and results[-1].extracted is None


def test_broken_tests_are_an_error_not_a_wrong_answer(verifier) -> None:
    # with a canonical solution the task is checked first: if even that fails, the task is broken
    tests = CodeTests(entry_point="f", tests=["assert f(1) == 2"], canonical_solution="def f(x):\n    return x\n")
    assert verifier.verify("def f(x):\n    return x + 1\n", Problem("t", "?", code=tests)).reason == "error"
    # without one there is nothing to blame but the answer
    tests = CodeTests(entry_point="f", tests=["assert f(1) == 1"], test_setup_code="raise ValueError")
    assert verifier.verify("def f(x):\n    return x\n", Problem("u", "?", code=tests)).reason == "wrong"
    assert verifier.verify("def f(x):\n    return x\n", Problem("v", "?", code=CodeTests(
        entry_point="f", tests=["f(1) == 1"]))).reason == "error"   # not an assert
    broken = Problem("HumanEval/999", "?", code=CodeTests(entry_point="f", prompt="def f(x):\n",
                                                           canonical_solution="    return 1 / 0\n",
                                                           base_input=[[1]], plus_input=[]))
    assert verifier.verify("    return x\n", broken).reason == "error"
    with pytest.raises(UserError, match="has no code tests"):
        verifier.verify("x", Problem("m", "?", answer="1"))
