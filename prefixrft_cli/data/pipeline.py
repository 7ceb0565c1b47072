"""`prefixrft prepare` for training sets: read -> map + validate -> de-duplicate -> length filter
-> split -> fill missing demonstrations -> write a dataset folder with a manifest.

Input is one or more JSONL / JSON / Parquet / Arrow files or save_to_disk folders, or the
generated toy task (`toy_domain`). Each stage's count goes into the manifest; nothing is
dropped without being counted. Demonstrations are filled on the train split only (the
eval split is scored, not imitated). Leaves out: downloads from a hub (give local files).
Test: tests/test_prepare_training.py (the model demonstrator: tests/test_prepare_demonstrators.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefixrft_cli.data import dataset, stages
from prefixrft_cli.data.mapping import DOMAINS, ColumnMap
from prefixrft_cli.data.progress import NO_PROGRESS, Progress
from prefixrft_cli.data.readers import input_format, iter_rows
from prefixrft_cli.errors import UserError
from prefixrft_cli.records import Problem

MAX_LISTED = 50  # answer conflicts listed by row in the manifest (all are counted)


@dataclass
class TeacherOptions:
    """How the `model` demonstrator samples: a teacher model, k samples a problem, verified answers kept."""

    model: str = "toy"
    samples_per_problem: int = 4
    keep_per_problem: int = 1
    max_new_tokens: int = 512
    temperature: float = 0.7
    prompt_template: str = "plain"
    dtype: str = "float32"
    trust_remote_code: bool = False  # model.trust_remote_code
    batch_problems: int = 8
    journal: Path | None = None   # finished problems, appended as they finish; default <output>.demos.jsonl


@dataclass
class PrepareOptions:
    """Everything one `prefixrft prepare` run for a training set needs."""

    output: Path
    inputs: list[Path] = field(default_factory=list)
    toy_domain: str | None = None        # generate the toy task instead of reading inputs
    toy_count: int = 2000
    domain: str = "math"
    mapping: dict[str, str] = field(default_factory=dict)
    hf_split: str | None = None
    tokenizer: str = "toy"               # used only when a token limit is set
    max_prompt_tokens: int | None = None
    max_demo_tokens: int | None = None
    eval_fraction: float = 0.0
    seed: int = 0
    demonstrator: str = "dataset"
    require_demonstration: bool = False
    teacher: TeacherOptions = field(default_factory=TeacherOptions)
    overwrite: bool = False
    command: str = ""


@dataclass
class InputFile:
    """One input as recorded in the manifest."""

    path: str
    format: str
    sha256: str
    records: int
    columns: dict[str, str]           # Problem field -> input column
    ignored_columns: list[str]        # columns no field reads


@dataclass
class PrepareReport:
    """What a run did: counts per stage (in order) and the manifest it wrote."""

    output: Path
    counts: dict[str, int]
    manifest: dict[str, Any]


def check_options(options: PrepareOptions) -> None:
    """Option errors before any work starts."""
    if options.domain not in DOMAINS:
        raise UserError(f"--domain {options.domain}: not valid; valid: {', '.join(DOMAINS)}")
    if options.toy_domain is None and not options.inputs:
        raise UserError("prepare needs --input FILE (or --toy math|code, or --benchmark NAME)")
    if options.toy_domain is not None and options.inputs:
        raise UserError("--toy generates its problems; drop --input")
    if not 0.0 <= options.eval_fraction < 1.0:
        raise UserError(f"--eval-fraction {options.eval_fraction}: must be in [0, 1)")
    for name, value in (("--max-prompt-tokens", options.max_prompt_tokens),
                        ("--max-demo-tokens", options.max_demo_tokens)):
        if value is not None and value < 1:
            raise UserError(f"{name} {value}: must be at least 1")
    if options.output.exists() and not options.overwrite:
        raise UserError(f"--output {options.output}: already exists; pass --overwrite to replace it")
    for path in options.inputs:
        input_format(path)  # a missing file or an unknown type fails here, before the long work


def read_inputs(options: PrepareOptions, progress: Progress) -> tuple[list[Problem], list[str], list[InputFile]]:
    """Every input row mapped to a validated Problem, with the row it came from."""
    problems: list[Problem] = []
    wheres: list[str] = []
    files: list[InputFile] = []
    for path in options.inputs:
        with progress.stage(f"reading {path.name}") as advance:
            rows = iter_rows(path, options.hf_split)
            first = next(rows, None)
            if first is None:
                raise UserError(f"--input {path}: no records")
            columns = ColumnMap.resolve(options.mapping, first, options.domain)
            count = 0
            for row in _chain(first, rows):
                problems.append(columns.to_problem(row, options.domain, f"{path.stem}-{count}", path.name))
                wheres.append(row.where)
                count += 1
                advance(1)
        ignored = sorted(set(first.record) - columns.used_columns())
        files.append(InputFile(str(path), input_format(path), dataset.sha256_file(path), count, dict(columns.columns),
                               ignored))
    return problems, wheres, files


def _chain(first, rest):
    yield first
    yield from rest


def toy_problems(options: PrepareOptions) -> list[Problem]:
    """The generated toy task: `toy_count` distinct problems of the toy train split.

    Their demonstrations are cleared, so the chosen demonstrator fills them (`toy`, the
    default, recomputes the same programmatic solutions; `model` samples a teacher).
    """
    from prefixrft_cli.toy_task import generate_problems

    if options.toy_domain not in DOMAINS:
        raise UserError(f"--toy {options.toy_domain}: not valid; valid: {', '.join(DOMAINS)}")
    if options.toy_count < 1:
        raise UserError(f"--count {options.toy_count}: must be at least 1")
    problems = generate_problems(options.toy_domain, options.toy_count, options.seed, "train")
    for problem in problems:
        problem.demonstrations = []
    return problems


def token_counter(name: str, progress: Progress) -> Callable[[list[str]], list[int]]:
    """Token counts (no special tokens) with the tokenizer of model `name`."""
    from prefixrft_cli.models import load_tokenizer

    tokenizer = load_tokenizer(name)

    def count(texts: list[str]) -> list[int]:
        lengths: list[int] = []
        with progress.stage("counting tokens", len(texts)) as advance:
            for start in range(0, len(texts), 512):
                batch = texts[start:start + 512]
                lengths.extend(len(ids) for ids in tokenizer(batch, add_special_tokens=False)["input_ids"])
                advance(len(batch))
        return lengths

    return count


def run_prepare(options: PrepareOptions, progress: Progress = NO_PROGRESS) -> PrepareReport:
    """Build the dataset folder `options.output`; returns the counts and the manifest written."""
    check_options(options)
    counts: dict[str, int] = {}
    if options.toy_domain is not None:
        options.domain = options.toy_domain
        problems = toy_problems(options)
        wheres, files = [f"toy problem {p.id}" for p in problems], []
    else:
        problems, wheres, files = read_inputs(options, progress)
    counts["read"] = len(problems)
    deduped = stages.dedupe(problems, wheres)
    _check_unique_ids(deduped.kept, deduped.kept_where)
    counts["duplicates_removed"] = deduped.duplicates
    counts["duplicate_demonstrations_merged"] = deduped.demonstrations_merged
    counts["answer_conflicts"] = len(deduped.answer_conflicts)
    problems = deduped.kept
    if options.max_prompt_tokens is not None or options.max_demo_tokens is not None:
        filtered = stages.filter_by_length(problems, token_counter(options.tokenizer, progress),
                                           options.max_prompt_tokens, options.max_demo_tokens)
        problems = filtered.kept
        counts["prompts_too_long"] = filtered.prompts_too_long
        counts["demonstrations_too_long"] = filtered.demonstrations_too_long
    counts["kept"] = len(problems)
    train, held_out = stages.split(problems, options.eval_fraction, options.seed)
    counts["train_before_demonstrations"], counts["eval"] = len(train), len(held_out)
    train = fill_demonstrations(train, options, counts, progress)
    counts["train"] = len(train)
    counts["train_with_demonstration"] = sum(1 for p in train if p.demonstrations)
    splits = {"train": train, **({"eval": held_out} if held_out else {})}
    if not train:
        raise UserError(f"no training problems left: {_where_they_went(counts, options)}")
    manifest = _manifest(options, files, counts)
    manifest["answer_conflicts"] = [{"kept": kept, "dropped": dropped}
                                    for kept, dropped in deduped.answer_conflicts[:MAX_LISTED]]
    written = dataset.write_dataset_folder(options.output, splits, manifest, options.overwrite)
    manifest["files"] = {k: vars(v) for k, v in written.items()}
    return PrepareReport(options.output, counts, manifest)


def _check_unique_ids(problems: list[Problem], wheres: list[str]) -> None:
    seen: dict[str, str] = {}
    for problem, where in zip(problems, wheres):
        if problem.id in seen:
            raise UserError(f"{where}: id {problem.id!r} was already used at {seen[problem.id]}; "
                            "map a unique id column with --map id=COLUMN")
        seen[problem.id] = where


def fill_demonstrations(train: list[Problem], options: PrepareOptions, counts: dict[str, int],
                        progress: Progress) -> list[Problem]:
    """Ask the demonstrator for problems without demonstrations; drop the rest only if asked to."""
    from prefixrft_cli import registry

    missing = [p for p in train if not p.demonstrations]
    counts["demonstrations_missing"] = len(missing)
    filled = 0
    if missing:
        factory = registry.demonstrators.get(options.demonstrator)
        with registry.demonstrators.guard(options.demonstrator, "its constructor"):
            demonstrator = factory(**_teacher_kwargs(options, progress)) if options.demonstrator == "model" \
                else factory()
        with progress.stage(f"demonstrating ({options.demonstrator})", None), \
                registry.demonstrators.guard(options.demonstrator, "demonstrate()"):
            produced = demonstrator.demonstrate(missing)
        if len(produced) != len(missing):
            raise UserError(f"demonstrator {options.demonstrator!r} returned {len(produced)} results "
                            f"for {len(missing)} problems")
        for problem, demos in zip(missing, produced):
            problem.demonstrations = list(demos)
            filled += bool(demos)
        stats = getattr(demonstrator, "stats", None)  # e.g. the model demonstrator's sample counts
        if isinstance(stats, dict):
            counts.update({k: v for k, v in stats.items() if isinstance(v, int)})
    counts["demonstrations_filled"] = filled
    if options.require_demonstration:
        kept = [p for p in train if p.demonstrations]
        counts["dropped_without_demonstration"] = len(train) - len(kept)
        return kept
    return train


def _where_they_went(counts: dict[str, int], options: PrepareOptions) -> str:
    """Which stage took the problems away, in the order the pipeline runs them (for the one-line error)."""
    steps = [("read", counts.get("read", 0)), ("duplicates removed", counts.get("duplicates_removed", 0)),
             (f"prompts over --max-prompt-tokens {options.max_prompt_tokens}", counts.get("prompts_too_long", 0)),
             (f"demonstrations over --max-demo-tokens {options.max_demo_tokens}",
              counts.get("demonstrations_too_long", 0)),
             (f"held out by --eval-fraction {options.eval_fraction}", counts.get("eval", 0)),
             ("dropped by --require-demonstration", counts.get("dropped_without_demonstration", 0))]
    return ", ".join(f"{n} {what}" for what, n in steps if n or what == "read")


def _teacher_kwargs(options: PrepareOptions, progress: Progress) -> dict[str, Any]:
    teacher = options.teacher
    journal = teacher.journal or options.output.with_name(options.output.name + ".demos.jsonl")
    return dict(teacher=teacher.model, samples_per_problem=teacher.samples_per_problem,
                keep_per_problem=teacher.keep_per_problem, max_new_tokens=teacher.max_new_tokens,
                temperature=teacher.temperature, prompt_template=teacher.prompt_template, dtype=teacher.dtype,
                trust_remote_code=teacher.trust_remote_code,
                batch_problems=teacher.batch_problems, seed=options.seed, journal=journal, progress=progress)


def _manifest(options: PrepareOptions, files: list[InputFile], counts: dict[str, int]) -> dict[str, Any]:
    settings = {
        "domain": options.domain, "mapping": options.mapping, "hf_split": options.hf_split,
        "toy_domain": options.toy_domain, "toy_count": options.toy_count if options.toy_domain else None,
        "tokenizer": options.tokenizer if options.max_prompt_tokens or options.max_demo_tokens else None,
        "max_prompt_tokens": options.max_prompt_tokens, "max_demo_tokens": options.max_demo_tokens,
        "eval_fraction": options.eval_fraction, "seed": options.seed, "demonstrator": options.demonstrator,
        "require_demonstration": options.require_demonstration,
    }
    if options.demonstrator == "model":
        settings["teacher"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options.teacher).items()}
    return {
        "format": dataset.FORMAT, "version": 1,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": options.command, "domain": options.domain,
        "inputs": [asdict(f) for f in files], "settings": settings, "counts": counts,
        "schema": dataset.SCHEMA,
    }
