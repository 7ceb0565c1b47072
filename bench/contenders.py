"""The processes of bench/vs_trl.py: prefixrft (`rft`, `prefix-rft`) and TRL's GRPOTrainer, one step on command.

Each contender runs in its own process (`serve`) with one torch thread and waits on a pipe
for a job (a Shape and the problems of each step), builds that run, then, for each
("step", i) the coordinator sends, does its step i and answers with what it measured
(wall and CPU seconds of the step, the phases, the tokens generated, the mean
response length and reward, the peak RSS so far). The same `Shape` (model folder, prompts
per step, rollouts per prompt, response budget, learning rate) and the same problem order
reach every process; each builds its problems with prefixrft's own toy generator and its
rewards with prefixrft's own verifier.

- prefixrft: the library's step function (`prefixrft_cli.train.loop.rl_step_batch`) on a
  context from `make_context`, as `train_stage` drives it, not the CLI; the step's
  prompts are the coordinator's, not `next_prompts`' draw.
- TRL: `GRPOTrainer.train()` with a callback that blocks in `on_step_begin` until the
  coordinator says go and reports in `on_step_end`; with steps_per_generation = 1 and
  gradient_accumulation_steps = 1 those two bracket one generation batch (generate,
  reward, advantages) and one optimizer step. Its generation share is the time inside
  `_generate_and_score_completions`.
"""

from __future__ import annotations

import gc
import resource
import tempfile
import time
from dataclasses import dataclass, field
from statistics import mean


@dataclass(frozen=True)
class Shape:
    """The work every contender does in a step."""

    model: str = "toy"                 # a from_pretrained folder, or "toy"
    prompts_per_step: int = 8          # B
    rollouts_per_prompt: int = 8       # n (prefix-rft: one of them hybrid)
    max_response_tokens: int = 64      # a response is cut at this many tokens
    lr: float = 1e-6                   # AdamW, constant (no warm-up): small, so lengths drift little
    schedule_step: int = 100           # prefix-rft: step i runs as step schedule_step + i of a 200-step cosine run
    seed: int = 0
    toy_train_problems: int = 2000


@dataclass
class StepReport:
    """What one contender measured of one step."""

    wall_seconds: float
    cpu_seconds: float
    phase_seconds: dict[str, float]
    generated_tokens: int              # tokens the policy sampled (prefix-rft: demonstration prefixes excluded)
    response_tokens_mean: float        # mean response length, a hybrid row's prefix included
    rows: int
    reward_mean: float
    peak_rss_mb: float
    extra: dict = field(default_factory=dict)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def shape_config(shape: Shape, algo: str, run_dir: str):
    """prefixrft's Config for `shape` (the TRL process reads its problems and verifier from it too)."""
    from prefixrft_cli.config import load_config

    return load_config(None, overrides=[
        f"algo={algo}", "domain=math", f"seed={shape.seed}", f"model.name_or_path={shape.model}", "model.device=cpu",
        "data.train=toy", "data.eval=toy", "data.eval_problems=8",
        f"data.toy_train_problems={shape.toy_train_problems}",
        f"rollout.rollouts_per_prompt={shape.rollouts_per_prompt}", "rollout.hybrid_rollouts_per_prompt=1",
        f"rollout.max_response_tokens={shape.max_response_tokens}", "rollout.temperature=1.0",
        f"train.prompts_per_step={shape.prompts_per_step}", "train.steps=200", "train.threads=1",
        "train.checkpoint_every=0", "train.checkpoint_every_minutes=0", f"train.run_dir={run_dir}",
        f"optim.lr={shape.lr}", "optim.warmup_steps=0", "loss.kl_coef=0", "loss.aggregation=dr-grpo",
        "advantage.estimator=dr-grpo"])


class _Discard:
    def write(self, record: dict) -> None:
        pass


def serve(conn, contender: str) -> None:
    """A contender's process: for each job (shape, order) build the run, then one step per ("step", i) until "end"."""
    import warnings

    import torch

    warnings.simplefilter("ignore", FutureWarning)   # transformers' deprecation notices, once per process and step
    torch.set_num_threads(1)
    run = trl_job if contender == "trl" else prefixrft_job
    for shape, order in iter(conn.recv, None):
        run(conn, shape, contender, order)
        gc.collect()


def prefixrft_run(shape: Shape, algo: str, run_dir: str):
    """(config, context, stage) of a prefixrft run of `shape`, built as train_stage builds them."""
    from prefixrft_cli.algorithms import get_algorithm
    from prefixrft_cli.train.backend import make_backend
    from prefixrft_cli.train.loop import new_stage
    from prefixrft_cli.train.setup import make_context

    cfg = shape_config(shape, algo, run_dir)
    ctx = make_context(cfg, make_backend(cfg))
    return cfg, ctx, new_stage(ctx, cfg, get_algorithm(cfg.algo), cfg.train.steps)


def prefixrft_job(conn, shape: Shape, algo: str, order: list[list[int]]) -> None:
    """A prefixrft contender: build the run as train_stage does, then one rl_step_batch per ("step", i)."""
    from prefixrft_cli.train.loop import rl_step_batch

    with tempfile.TemporaryDirectory(prefix=f"vs-trl-{algo}-") as tmp:
        cfg, ctx, stage = prefixrft_run(shape, algo, f"{tmp}/run")
        conn.send({"ready": True, "parameters": sum(p.numel() for p in ctx.policy.parameters()),
                   "first_prompt_ids": ctx.items[order[0][0]].prompt_ids})
        for _, step in iter(conn.recv, "end"):
            items = [ctx.items[k] for k in order[step]]
            wall, cpu = time.perf_counter(), time.process_time()
            with ctx.backend.precision.autocast():
                record, batch = rl_step_batch(ctx, cfg, stage, items, shape.schedule_step + step, _Discard())
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rollouts = batch.rollouts
            conn.send(StepReport(
                wall, cpu, dict(record.phase_seconds),
                sum(len(r.response_ids) - (r.prefix_len if r.hybrid else 0) for r in rollouts),
                mean(len(r.response_ids) for r in rollouts), len(rollouts), record.reward_mean, peak_rss_mb(),
                {"hybrid_rows": sum(r.hybrid for r in rollouts)}))
        conn.send({"peak_rss_mb": peak_rss_mb()})


def trl_job(conn, shape: Shape, _: str, order: list[list[int]]) -> None:
    """TRL's GRPOTrainer (Dr. GRPO, no KL, no vLLM) on the same problems, model, budget and reward."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from prefixrft_cli.models import load_policy
    from prefixrft_cli.prompts import encode_prompt, prompt_text
    from prefixrft_cli.train.setup import load_problems
    from prefixrft_cli.verify import make_verifier

    with tempfile.TemporaryDirectory(prefix="vs-trl-trl-") as tmp:
        cfg = shape_config(shape, "rft", f"{tmp}/run")
        problems = load_problems(cfg.data.train, cfg, "train")
        verifier = make_verifier(cfg.domain, answer_format=cfg.train.reward_answer_format)
        policy, tokenizer = load_policy(cfg.model.name_or_path, "float32")
        tokenizer.padding_side = "left"
        rows = [{"prompt": prompt_text(problems[k], tokenizer, "plain"), "problem_index": k}
                for ks in order for k in ks]
        scores: list[float] = []

        def prefixrft_reward(prompts, completions, problem_index, **_):
            results = verifier.verify_batch(completions, [problems[k] for k in problem_index])
            scores[:] = [r.score for r in results]
            return scores[:]

        args = trl_args(shape, tmp, len(order))
        lockstep = LockstepCallback(conn, scores)
        trainer = GRPOTrainer(model=policy, reward_funcs=prefixrft_reward, args=args,
                              train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[lockstep])
        lockstep.time_generation(trainer)
        first = tokenizer(text=[rows[0]["prompt"]])["input_ids"][0]
        assert first == encode_prompt(problems[order[0][0]], tokenizer, "plain"), "TRL tokenizes the prompt otherwise"
        conn.send({"ready": True, "parameters": sum(p.numel() for p in policy.parameters()), "first_prompt_ids": first})
        trainer.train()
        assert conn.recv() == "end", "the coordinator asked TRL for more steps than it was built for"
        conn.send({"peak_rss_mb": peak_rss_mb()})


def trl_args(shape: Shape, output_dir: str, steps: int):
    """GRPOConfig for the same work: n generations of B prompts per optimizer step, one pass, AdamW, constant lr."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=output_dir, use_cpu=True, bf16=False, fp16=False, seed=shape.seed, report_to="none",
        save_strategy="no", logging_steps=10 ** 6, disable_tqdm=True, dataloader_num_workers=0,
        per_device_train_batch_size=shape.prompts_per_step * shape.rollouts_per_prompt,
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, max_steps=steps,
        num_generations=shape.rollouts_per_prompt, max_completion_length=shape.max_response_tokens,
        temperature=1.0, top_p=1.0, top_k=0, use_vllm=False, shuffle_dataset=False, log_completions=False,
        beta=0.0, loss_type="dr_grpo", scale_rewards="none", epsilon=0.2, epsilon_high=0.2,
        learning_rate=shape.lr, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
        adam_beta1=0.9, adam_beta2=0.99, weight_decay=0.0, max_grad_norm=1.0,
        gradient_checkpointing=False)  # TRL defaults it on; prefixrft keeps activations too (the same work)


def _callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


class LockstepCallback(_callback_base()):
    """Blocks each TRL step until the coordinator sends ("step", i); reports the step at its end."""

    def __init__(self, conn, scores: list[float]):
        self.conn, self.scores = conn, scores
        self.generation_seconds, self.generated = 0.0, (0, 0)

    def time_generation(self, trainer) -> None:
        """Time TRL's generation batch (generate, reward, advantages) and count its completion tokens."""
        inner = trainer._generate_and_score_completions

        def timed(inputs):
            tick = time.perf_counter()
            out = inner(inputs)
            self.generation_seconds = time.perf_counter() - tick
            self.generated = (int(out["completion_mask"].sum()), int(out["completion_mask"].shape[0]))
            return out

        trainer._generate_and_score_completions = timed

    def on_step_begin(self, args, state, control, **kwargs):
        message = self.conn.recv()
        assert message != "end" and message[1] == state.global_step, f"TRL is at step {state.global_step}"
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        tokens, rows = self.generated
        phases = {"generate_and_score": round(self.generation_seconds, 3),
                  "update": round(wall - self.generation_seconds, 3)}
        self.conn.send(StepReport(wall, cpu, phases, tokens, tokens / rows, rows, mean(self.scores), peak_rss_mb()))
