"""The program a sandboxed job's fresh interpreter runs: the untrusted code, then its probes.

The runner (sandbox_runner.py) starts it as `python -E -s -S -B /sandbox/sandbox_child.pyc`
in a new interpreter (execve: nothing of the runner's memory survives), from a read-only
folder holding only this file and a copy of values.py, both compiled when the view was
built, with the job's limits already set. It imports nothing it can do without (see
values.py): a job's start costs little more than the interpreter's own. It reads `job`
(the runner's marshal of the program and probes) from its working folder and deletes
it, then runs the program and each probe, writing one length-prefixed JSON frame per
probe to fd 3:
["ready"] once the program's top level ran, then per probe ["ok", value] | ["digest", hex]
| ["raise", error name] | ["unencodable", why] | ["need", [call keys]] ; or one
["exec_error", error name] when the program itself failed.

Probes: {"args": [...]} calls the entry point; {"expr": "f(2)"} evaluates an expression;
{"call": key} calls a function named in the key (asserts.call_key) with its arguments;
{"check": source, "bind": {...}, "stubs": [...], "memo": {...}} evaluates an assert's
check where no candidate code runs: bound values, and candidate functions replaced by
stubs answering from `memo` (calls not in it are collected and reported as "need").
The program and probes are compiled with `dont_inherit=True`: this file's own
`from __future__ import annotations` must not make the candidate's annotations lazy (a
`List` it never imported has to fail, as it does under evalplus). Nothing sent here is
trusted: the runner caps what it reads, the verifier decodes and judges. Test: tests/test_verify_sandbox.py.
"""

from __future__ import annotations

import marshal
import os
import sys

if __package__:   # imported in the project (tests)
    from prefixrft_plugins.verifiers import values
else:             # run as a script in the sandbox, beside its copy of values.py
    import values


def send(text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    data = len(data).to_bytes(4, "big") + data
    view = memoryview(data)
    while view:
        view = view[os.write(3, view):]


def error_name(err: BaseException) -> str:
    try:
        return str(type(err).__name__)[:80]
    except BaseException:
        return "?"


class Unknown:
    """What a stub returns for a call not answered yet: every operation gives another Unknown.

    The check runs on with it only to find more of the calls it needs in one pass; a
    check that met an Unknown is never judged, it asks for those calls and runs again.
    """

    def __getattr__(self, name: str) -> Unknown:
        return self

    def __call__(self, *args: object, **kwargs: object) -> Unknown:
        return self

    def __bool__(self) -> bool:
        return True

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    def __index__(self) -> int:
        return 0

    __int__ = __index__

    def __float__(self) -> float:
        return 0.0

    def __hash__(self) -> int:
        return 0

    def __getitem__(self, key: object) -> Unknown:
        return self

    def __contains__(self, item: object) -> bool:
        return True


def _unknown_operator(self: Unknown, *args: object) -> Unknown:
    return self


for _name in ("eq", "ne", "lt", "le", "gt", "ge", "add", "radd", "sub", "rsub", "mul", "rmul", "truediv",
              "rtruediv", "floordiv", "rfloordiv", "mod", "rmod", "pow", "rpow", "neg", "pos", "abs", "and",
              "rand", "or", "ror", "xor", "rxor", "round"):
    setattr(Unknown, f"__{_name}__", _unknown_operator)


class Stubs:
    """Candidate functions replaced by lookups in `memo` (call key -> ["ok", encoded value] | ["raise"])."""

    def __init__(self, memo: dict):
        self.memo, self.needed = memo, []

    def stub(self, name: str):
        def call(*args: object, **kwargs: object) -> object:
            try:
                key = values.canonical_dumps([name, list(args), kwargs])
            except (values.Unencodable, ValueError, RecursionError):
                if self.needed:
                    return Unknown()   # an argument built from an unknown result: ask again later
                raise TypeError(f"arguments of {name}() cannot be sent to the candidate") from None
            if key in self.memo:
                if self.memo[key][0] != "ok":
                    raise RuntimeError(f"{name}() raised")
                return values.decode(self.memo[key][1])
            if key not in self.needed:
                self.needed.append(key)
            return Unknown()

        return call


def run_check(probe: dict, namespace: dict) -> str:
    scope = dict(namespace)
    scope.update({name: values.decode(value) for name, value in probe.get("bind", {}).items()})
    stubs = Stubs(probe.get("memo", {}))
    for name in probe.get("stubs", ()):
        scope[name] = stubs.stub(name)
    try:
        result = eval(compile(probe["check"], "<test>", "eval", dont_inherit=True), scope)
    except BaseException:
        if stubs.needed:
            return values.to_json(["need", stubs.needed])
        raise
    return values.to_json(["need", stubs.needed]) if stubs.needed else values.report(result)


def run_probe(probe: dict, namespace: dict, job: dict) -> str:
    if "args" in probe:
        result = namespace.get(job.get("entry_point") or "")(*values.decode(probe["args"]))
        if job.get("not_none") and type(result) is not bool:
            result = result is not None
    elif "expr" in probe:
        result = eval(compile(probe["expr"], "<test>", "eval", dont_inherit=True), namespace)
    elif "call" in probe:
        name, args, kwargs = values.loads(probe["call"])
        result = namespace[name](*args, **kwargs)
    else:
        return run_check(probe, namespace)
    return values.report(result)


def main() -> None:
    with open("job", "rb") as handle:
        job = marshal.load(handle)   # written by the runner, not by any job
    os.unlink("job")
    import builtins

    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    sys.argv = ["solution.py"]
    try:
        exec(compile(job["program"], "solution.py", "exec", dont_inherit=True), namespace)
    except BaseException as err:
        send(values.to_json(["exec_error", error_name(err)]))
        return
    send('["ready"]')
    for probe in job["probes"]:
        try:
            frame = run_probe(probe, namespace, job)
        except values.Unencodable as err:
            frame = values.to_json(["unencodable", str(err)[:200]])
        except BaseException as err:
            frame = values.to_json(["raise", error_name(err)])
        send(frame)


if __name__ == "__main__":
    try:
        main()
    except BaseException:   # a failure of ours before the program ran: say so in the job's log
        import traceback

        traceback.print_exc()
    finally:
        os._exit(0)
