"""`prefixrft prepare` as one library call: import benchmarks, or build a training-set folder.

`PrepareRequest` holds the command's options as given; `prepare` checks how they combine
and runs `benchmark_store.import_benchmarks` or `pipeline.run_prepare`. The CLI file only
parses, calls this and renders. Test: tests/test_prepare_training.py, tests/test_prepare_benchmarks.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefixrft_cli.config import Config
from prefixrft_cli.data.progress import NO_PROGRESS
from prefixrft_cli.errors import UserError


@dataclass
class PrepareRequest:
    """The options of `prefixrft prepare`, as given (None: not given)."""

    command_line: str                           # the command as a user would retype it (kept in the manifest)
    benchmark: list[str] | None = None
    input_dir: Path | None = None
    data_dir: Path | None = None
    inputs: list[str] | None = None
    output: Path | None = None
    toy: str | None = None
    count: int = 2000
    domain: str = "math"
    maps: list[str] = field(default_factory=list)
    hf_split: str | None = None
    model: str | None = None
    max_prompt_tokens: int | None = None
    max_demo_tokens: int | None = None
    eval_fraction: float = 0.0
    seed: int | None = None
    demonstrator: str | None = None
    require_demonstration: bool = False
    teacher: str | None = None
    teacher_samples: int = 4
    teacher_keep: int = 1
    teacher_max_new_tokens: int = 512
    teacher_temperature: float = 0.7
    overwrite: bool = False


def prepare(request: PrepareRequest, cfg: Config, progress: Any = NO_PROGRESS) -> tuple[str, Any]:
    """('benchmarks', [import results]) or ('dataset', PrepareReport), after checking the options combine."""
    from prefixrft_cli.data.mapping import parse_map_options

    r = request
    mapping = parse_map_options(r.maps or [])
    if r.benchmark:
        if r.output is not None or r.toy is not None:
            raise UserError("--benchmark writes into --data-dir; drop --output / --toy")
        if r.inputs and len(r.inputs) > 1:
            raise UserError("--benchmark takes one --input FILE (or --input-dir DIR)")
        from prefixrft_cli.data import paths
        from prefixrft_cli.data.benchmark_store import import_benchmarks

        folder = paths.resolve_data_dir(r.data_dir)
        return "benchmarks", (folder, import_benchmarks(r.benchmark, folder, Path(r.inputs[0]) if r.inputs else None,
                                                        r.input_dir, mapping, r.command_line, progress))
    if r.input_dir is not None or r.data_dir is not None:
        raise UserError("--input-dir and --data-dir go with --benchmark; a training set takes --input and --output")
    if r.output is None:
        raise UserError("prepare needs --output DIR for a training set (or --benchmark NAME to import a benchmark)")
    from prefixrft_cli.data.pipeline import PrepareOptions, TeacherOptions, run_prepare

    options = PrepareOptions(
        output=r.output, inputs=[Path(i) for i in r.inputs or []], toy_domain=r.toy, toy_count=r.count,
        domain=r.domain, mapping=mapping, hf_split=r.hf_split, tokenizer=r.model or cfg.model.name_or_path,
        max_prompt_tokens=r.max_prompt_tokens, max_demo_tokens=r.max_demo_tokens, eval_fraction=r.eval_fraction,
        seed=cfg.seed if r.seed is None else r.seed, demonstrator=r.demonstrator or ("toy" if r.toy else "dataset"),
        require_demonstration=r.require_demonstration, overwrite=r.overwrite, command=r.command_line,
        teacher=TeacherOptions(model=r.teacher or cfg.model.name_or_path, samples_per_problem=r.teacher_samples,
                               keep_per_problem=r.teacher_keep, max_new_tokens=r.teacher_max_new_tokens,
                               temperature=r.teacher_temperature, prompt_template=cfg.data.prompt_template,
                               dtype=cfg.model.dtype, trust_remote_code=cfg.model.trust_remote_code))
    return "dataset", run_prepare(options, progress)
