"""What a training run holds besides the loop: policy, data, verifier, sampler, RNGs, run folder.

All randomness goes through `TrainContext.generator` (torch) and `TrainContext.rng`
(Python), both seeded from `cfg.seed`, so a run is reproducible from its saved config.
"""

from __future__ import annotations

import copy
import random
import shutil
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
from prefixrft_cli.train.records import StepRecord
from prefixrft_cli.train.report import Reporter, make_reporter
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
    model: torch.nn.Module
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

    def new_optimizer(self, cfg: Config):
        """AdamW with a linear warm-up to the learning rate, then constant."""
        o = cfg.optim
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        warmup = max(o.warmup_steps * cfg.train.mini_batches * cfg.train.ppo_epochs, 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / warmup))
        return optimizer, scheduler

    def report(self, record: StepRecord) -> None:
        if self.reporter is not None:
            self.reporter.log(record.to_json())


def make_context(cfg: Config) -> TrainContext:
    """Everything a run needs, checked before anything is written (bad input leaves no run folder)."""
    if cfg.eval.samples < 1:
        raise UserError("config eval.samples must be at least 1 for training (0, each benchmark's own k, "
                        "is for prefixrft eval)")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    verifier = make_verifier(cfg.domain, answer_format=cfg.train.reward_answer_format)
    problems = load_problems(cfg.data.train, cfg, "train")
    eval_problems = load_eval_problems(cfg)
    model, tokenizer = load_policy(cfg.model.name_or_path, cfg.model.dtype, cfg.model.trust_remote_code)
    model.train()
    items = load_items(cfg, tokenizer, problems)
    ref_model = copy.deepcopy(model).eval().requires_grad_(False) if cfg.loss.kl_coef > 0 else None
    run_dir = Path(cfg.train.run_dir or f"runs/{cfg.algo}-{cfg.domain}-{time.strftime('%Y%m%d-%H%M%S')}")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--run-dir {run_dir}: exists and is not a folder")
    if (run_dir / "metrics.jsonl").exists():
        raise UserError(f"--run-dir {run_dir}: already holds a run (metrics.jsonl); choose another folder")
    sampler = make_sampler(cfg.rollout.engine, model, tokenizer, max_model_len=max_sequence_tokens(cfg),
                           gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization, dtype=cfg.model.dtype)
    writable_dir(run_dir, "--run-dir")
    return TrainContext(cfg, run_dir, model, tokenizer, ref_model, verifier, sampler, items, eval_problems,
                        torch.Generator().manual_seed(cfg.seed), random.Random(cfg.seed),
                        tokenizer.pad_token_id, make_reporter(cfg, run_dir))


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


def evaluate(ctx: TrainContext, label: str, show: bool) -> EvalResult:
    """Held-out accuracy: avg@k at the evaluation temperature, and greedy."""
    from prefixrft_cli.evaluate import score_problems

    e = ctx.cfg.eval
    common = dict(verifier=ctx.verifier, max_new_tokens=e.max_response_tokens, template=ctx.cfg.data.prompt_template,
                  seed=ctx.cfg.seed, sampler=ctx.sampler, batch_size=256, answer_after_think=e.answer_after_think,
                  top_p=e.top_p)
    sampled = score_problems(ctx.model, ctx.tokenizer, ctx.eval_problems, samples=e.samples,
                             temperature=e.temperature, **common)
    greedy = score_problems(ctx.model, ctx.tokenizer, ctx.eval_problems, samples=1, temperature=0.0,
                            **common) if e.greedy else None
    result = EvalResult(sampled.accuracy, None if greedy is None else greedy.accuracy, len(ctx.eval_problems))
    if show:
        from rich.console import Console

        greedy_text = "" if result.greedy is None else f", greedy {result.greedy:.1%}"
        Console().print(f"[bold]{label}[/bold]: avg@{e.samples} {result.sampled:.1%} at temperature "
                        f"{e.temperature}{greedy_text} on {result.problems} held-out problems")
    return result


def save_checkpoint(ctx: TrainContext, name: str) -> Path:
    """The policy and tokenizer as a from_pretrained folder, written to a temp name then renamed."""
    final = ctx.run_dir / "checkpoints" / name
    tmp = final.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ctx.model.save_pretrained(tmp)
    ctx.tokenizer.save_pretrained(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final
