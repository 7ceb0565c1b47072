"""What a training run holds besides the loop: policy, data, verifier, sampler, RNGs, run folder.

All randomness goes through `TrainContext.generator` (torch) and `TrainContext.rng`
(Python), both seeded from `cfg.seed`, so a run is reproducible from its saved config.
Every rank of a distributed run holds the same two streams and draws the whole step's
plan from them (train/backend.py); only rank 0 creates and writes the run folder.
`policy` is the plain module (it generates, is scored and saved); `model` is what the
backend trains (the policy itself, a DDP wrapper or a DeepSpeed engine).
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import dataclasses
import functools
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from prefixrft_cli.algorithms import get_algorithm
from prefixrft_cli.config import Config, max_sequence_tokens
from prefixrft_cli.data.sources import read_problems, resolve_source
from prefixrft_cli.errors import UserError
from prefixrft_cli.jsonio import writable_dir
from prefixrft_cli.models import load_policy
from prefixrft_cli.prompts import encode_demonstration, encode_prompt
from prefixrft_cli.records import Problem
from prefixrft_cli.toy_task import ToyOptions
from prefixrft_cli.protocols import Verifier
from prefixrft_cli.rollout.sampler import Sampler, make_sampler
from prefixrft_cli.train.backend import Backend
from prefixrft_cli.train.checkpoint import write_folder
from prefixrft_cli.train.records import StepRecord
from prefixrft_cli.train.report import Reporter, check_reporter, make_reporter
from prefixrft_cli.train.rollouts import PromptItem
from prefixrft_cli.verify import make_verifier


@dataclass
class EvalResult:
    sampled: float      # avg@k at the evaluation temperature
    greedy: float | None
    problems: int


@dataclass
class TrainContext:
    cfg: Config
    run_dir: Path
    backend: Backend
    policy: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    ref_model: torch.nn.Module | None
    verifier: Verifier
    sampler: Sampler
    items: list[PromptItem]
    eval_problems: list[Problem]
    generator: torch.Generator
    rng: random.Random
    pad_id: int
    reporter: Reporter | None = None
    model: torch.nn.Module | None = None  # the training handle, set by the backend at each stage
    _order: list[int] = field(default_factory=list)
    _seed_counter: int = 0

    def next_prompts(self, count: int, with_demos: bool = False) -> list[PromptItem]:
        """The next `count` training prompts (only those with demonstrations if asked), reshuffled every pass."""
        pool = {k for k, item in enumerate(self.items) if item.demo_ids or not with_demos}
        batch = []
        while len(batch) < count:
            if not self._order:
                self._order = sorted(pool)
                self.rng.shuffle(self._order)
            k = self._order.pop()
            if k in pool:
                batch.append(self.items[k])
        return batch

    def next_seed(self) -> int:
        self._seed_counter += 1
        return self.cfg.seed * 1_000_003 + self._seed_counter

    def data_state(self) -> dict:
        """The data order still to serve and the sampler's seed counter (what a checkpoint keeps)."""
        return {"order": list(self._order), "seed_counter": self._seed_counter}

    def restore_data_state(self, state: dict) -> None:
        self._order, self._seed_counter = list(state["order"]), int(state["seed_counter"])

    def prepare_stage(self, cfg: Config):
        """Wrap the policy for training (once) and build the stage's optimizer; returns (optimizer, scheduler)."""
        self.model, optimizer, scheduler = self.backend.prepare(self.policy, cfg)
        self.policy = self.backend.policy(self.model)  # the same module, wrapped or sharded in place
        if self.backend.lockstep is not None:  # sharded weights: every rank must make the same forwards
            self.sampler.lockstep = self.backend.lockstep
        return optimizer, scheduler

    def report(self, record: StepRecord) -> None:
        if self.reporter is not None:
            self.reporter.log(record.to_json())


def with_run_dir(cfg: Config) -> Config:
    """`cfg` with train.run_dir filled in (default runs/<algo>-<domain>-<time>), so config.yaml names it."""
    run_dir = cfg.train.run_dir or f"runs/{cfg.algo}-{cfg.domain}-{time.strftime('%Y%m%d-%H%M%S')}"
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, run_dir=run_dir))


def trim_heap() -> bool:
    """Hand the heap's free pages back to the system (glibc's malloc_trim); False off glibc.

    glibc raises its mmap threshold each time a large mmapped block is freed, so a step's
    activations end up on the heap, whose freed pages the process keeps: without a trim,
    resident memory stays at a step's peak and creeps up from step to step. The loop trims
    once after each update (docs/performance.md, "Policy update"). Fixing the threshold low
    instead was measured and dropped: it cost the toy step 40% of its time in page faults.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, looked up once (find_library runs ldconfig); None off glibc."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):   # not glibc (musl, macOS): their allocators do otherwise
        return None


def make_context(cfg: Config, backend: Backend) -> TrainContext:
    """Everything a run needs, loaded before anything is written (bad input leaves no run folder)."""
    if cfg.eval.samples < 1:
        raise UserError("config eval.samples must be at least 1 for training (0, each benchmark's own k, "
                        "is for prefixrft eval)")
    cfg = with_run_dir(cfg)
    check_reporter(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    verifier = make_verifier(cfg.domain, answer_format=cfg.train.reward_answer_format)
    problems = load_problems(cfg.data.train, cfg, "train")
    eval_problems = load_eval_problems(cfg)
    policy, tokenizer = load_policy(cfg.model.name_or_path, "float32", cfg.model.trust_remote_code)
    policy.to(backend.device).train()
    if cfg.train.gradient_checkpointing:  # transformers >= 5.2x names it activation checkpointing
        if hasattr(policy, "activation_checkpointing_enable"):
            policy.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    items = load_items(cfg, tokenizer, problems)
    ref_model = None
    if cfg.loss.kl_coef > 0:  # the initial policy, on the same device, in the compute precision when it is bf16
        ref_dtype = backend.precision.dtype if backend.precision.name == "bfloat16" else torch.float32
        ref_model = copy.deepcopy(policy).to(ref_dtype).eval().requires_grad_(False)
    # the sampler starts before the run folder is made: a vLLM refusal leaves no folder behind
    sampler = make_sampler(cfg.rollout.engine, policy, tokenizer, max_model_len=max_sequence_tokens(cfg),
                           gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization, dtype=cfg.model.dtype)
    run_dir = backend.broadcast(_new_run_dir(cfg) if backend.is_main else None)
    if isinstance(run_dir, str):
        raise UserError(run_dir)
    return TrainContext(cfg, run_dir, backend, policy, tokenizer, ref_model, verifier, sampler, items, eval_problems,
                        torch.Generator().manual_seed(cfg.seed), random.Random(cfg.seed),
                        tokenizer.pad_token_id, model=policy)


def _new_run_dir(cfg: Config) -> Path | str:
    """The run folder, made (empty) by rank 0 once everything has loaded; an error message instead.

    Whether it already holds a run is checked by open_session (train/resume.py) with the folder locked.
    """
    try:
        return writable_dir(cfg.train.run_dir, "--run-dir")
    except UserError as err:  # said by rank 0, raised on every rank
        return str(err)


def start_reporter(ctx: TrainContext) -> None:
    """The metric sink of train.report_to (rank 0); it writes into the run folder, so only once the lock is held."""
    ctx.reporter = make_reporter(ctx.cfg, ctx.run_dir) if ctx.backend.is_main else None


def load_problems(source: str, cfg: Config, split: str) -> list[Problem]:
    """data.train (split 'train') or data.eval: resolved by data/sources.py."""
    held_out = split != "train"
    return read_problems(resolve_source(source), cfg.domain, held_out, cfg.data.toy_train_problems, cfg.seed,
                        "eval" if held_out else "train", toy_options(cfg, held_out))


def load_items(cfg: Config, tokenizer, problems: list[Problem]) -> list[PromptItem]:
    """Training problems with prompts and demonstrations as token ids; over-long prompts are counted out."""
    items, too_long = [], 0
    for problem in problems:
        prompt = encode_prompt(problem, tokenizer, cfg.data.prompt_template)
        if len(prompt) > cfg.data.max_prompt_tokens:
            too_long += 1
            continue
        demos = [encode_demonstration(d.text, tokenizer) for d in problem.demonstrations
                 if d.correct is not False or cfg.data.use_incorrect_demos]
        items.append(PromptItem(problem, prompt, [d for d in demos if len(d) >= 2]))
    if not items:
        raise UserError(f"data.train={cfg.data.train}: no usable problems "
                        f"({too_long} longer than data.max_prompt_tokens={cfg.data.max_prompt_tokens})")
    if get_algorithm(cfg.algo).needs_demos and not any(item.demo_ids for item in items):
        raise UserError(f"algo {cfg.algo} needs demonstrations, and data.train={cfg.data.train} has none "
                        "(fill them with `prefixrft prepare --demonstrator ...`)")
    return items


def toy_options(cfg: Config, held_out: bool = False) -> ToyOptions:
    """The toy task's options of data.train (or, `held_out`, of data.eval: its difficulty only)."""
    d = cfg.data
    if held_out:
        return ToyOptions(d.toy_difficulty if d.toy_eval_difficulty == "same" else d.toy_eval_difficulty)
    return ToyOptions(d.toy_difficulty, d.toy_demo_share, d.toy_wrong_demo_share)


def load_eval_problems(cfg: Config) -> list[Problem]:
    problems = load_problems(cfg.data.eval, cfg, "test")
    return problems[:cfg.data.eval_problems] if cfg.data.eval_problems else problems


def evaluate(ctx: TrainContext, label: str, show: bool, policy: torch.nn.Module | None = None) -> EvalResult:
    """Held-out accuracy of `policy` (default: the run's): avg@k at the evaluation temperature, and greedy.

    A distributed run scores on rank 0 only, with a plain module, while the other ranks wait.
    """
    from prefixrft_cli.evaluate import score_problems

    e = ctx.cfg.eval
    sampler = ctx.sampler if policy is None else make_sampler("hf", policy, ctx.tokenizer)
    policy = ctx.policy if policy is None else policy
    common = dict(verifier=ctx.verifier, max_new_tokens=e.max_response_tokens, template=ctx.cfg.data.prompt_template,
                  seed=ctx.cfg.seed, sampler=sampler, batch_size=256, answer_after_think=e.answer_after_think,
                  top_p=e.top_p)
    with ctx.backend.precision.autocast():
        sampled = score_problems(policy, ctx.tokenizer, ctx.eval_problems, samples=e.samples,
                                 temperature=e.temperature, **common)
        greedy = score_problems(policy, ctx.tokenizer, ctx.eval_problems, samples=1, temperature=0.0,
                                **common) if e.greedy else None
    result = EvalResult(sampled.accuracy, None if greedy is None else greedy.accuracy, len(ctx.eval_problems))
    if show:
        from rich.console import Console

        greedy_text = "" if result.greedy is None else f", greedy {result.greedy:.1%}"
        Console().print(f"[bold]{label}[/bold]: avg@{e.samples} {result.sampled:.1%} at temperature "
                        f"{e.temperature}{greedy_text} on {result.problems} held-out problems")
    return result


def save_checkpoint(ctx: TrainContext, name: str) -> Path:
    """The policy and tokenizer as a from_pretrained folder (rank 0), written to a temp name, fsynced, renamed.

    Sharded weights are gathered into a full state dict on rank 0 first; every rank must call this.
    """
    final = ctx.run_dir / "checkpoints" / name
    state = ctx.backend.full_state_dict(ctx.model)
    if ctx.backend.is_main:
        state = None if state is None else _without_tied(ctx.policy, state)
        write_folder(final, lambda tmp: (ctx.policy.save_pretrained(tmp, state_dict=state),
                                         ctx.tokenizer.save_pretrained(tmp)))
    ctx.backend.barrier()
    return final


def _without_tied(policy: torch.nn.Module, state: dict) -> dict:
    """A gathered state dict without the second name of a tied parameter (e.g. lm_head = embed_tokens)."""
    first: dict[int, str] = {}
    tied = set()
    for name, param in policy.named_parameters(remove_duplicate=False):
        if id(param) in first:
            tied.add(name)
        first.setdefault(id(param), name)
    return {k: v for k, v in state.items() if k not in tied}
