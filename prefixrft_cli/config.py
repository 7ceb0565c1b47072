"""The one typed config tree: every default lives here, documented once.

YAML files override it (shipped ones: prefixrft_cli/configs/, named like `paper/prefix-rft`);
`key.sub=value` overrides on the command line override both. Unknown keys and sections are
rejected with a "did you mean"; values are checked against the field's type, string choices
against `CHOICES` and every number against its valid range in `RANGES` (both rendered into
docs/config.md). An error names the YAML file and line or the override, in one line. YAML
is read by yamlio.py (YAML 1.2 numbers such as `1e-5`, duplicate keys refused, a BOM
accepted). The resolved tree is saved as `config.yaml` in every run folder.

Test: tests/test_config.py loads and validates every shipped YAML.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prefixrft_cli.algo.selection import SELECTION_MODES, Selection, parse_selection
from prefixrft_cli.algorithms import ALGORITHM_NAMES, get_algorithm
from prefixrft_cli.errors import UserError, did_you_mean
from prefixrft_cli.toy_task import DIFFICULTIES, ToyOptions, check_options
from prefixrft_cli.yamlio import parse_value, read_yaml


@dataclass
class ModelConfig:
    name_or_path: str = "toy"       # hub id, local folder, or "toy" for the bundled tiny model
    device: str = "auto"            # auto (CUDA when available, else CPU) | cpu | cuda
    dtype: str = "auto"             # compute precision: auto (bf16 on CUDA, else fp32) | float32 | bfloat16 | float16
    trust_remote_code: bool = False # let from_pretrained run the model repository's own code


@dataclass
class DataConfig:
    train: str = "toy"              # "toy" (generated toy task for --domain) or a prepared dataset folder / JSONL
    eval: str = "toy"               # held-out set for before/after accuracy: "toy", a benchmark name, or a JSONL
    toy_train_problems: int = 2000  # how many toy training problems to generate
    eval_problems: int = 200        # held-out problems scored before and after training (0 = all)
    prompt_template: str = "plain"  # plain | chat (tokenizer's chat template) | luffy (LUFFY system prompt + chat)
    max_prompt_tokens: int = 1024   # longer prompts are skipped at load time and counted
    toy_difficulty: str = "easy"    # toy math training set: easy (2-3 operations, numbers to 20) | hard (4-5, to 60)
    toy_eval_difficulty: str = "same"  # held-out toy set (data.eval=toy): same (as toy_difficulty) | easy | hard
    toy_demo_share: float = 1.0     # share of toy training problems with a demonstration (the paper's 1%: 0.01)
    toy_wrong_demo_share: float = 0.0  # share of those demonstrations made wrong (toy math), flagged correct=false
    use_incorrect_demos: bool = False  # also train on demonstrations flagged correct=false (default: they are left out)


@dataclass
class RolloutConfig:
    engine: str = "hf"              # hf | vllm
    rollouts_per_prompt: int = 8    # n: responses per prompt, hybrid ones included
    hybrid_rollouts_per_prompt: int = 1  # m: of the n, how many start from a demonstration prefix
    temperature: float = 1.0        # sampling temperature of training rollouts
    top_p: float = 1.0              # nucleus sampling of training rollouts (1 = off)
    max_response_tokens: int = 64   # a response (prefix + continuation) is cut at this many tokens
    vllm_gpu_memory_utilization: float = 0.5  # share of GPU memory vLLM may take (engine vllm)


@dataclass
class PrefixConfig:
    scheduler: str = "cosine"       # cosine | uniform | linear | fixed
    prefix_len_high: float = 0.95   # upper end of the sampled length fraction L
    prefix_len_low_end: float = 0.05  # low_t at the last step (cosine / linear), or the fixed lower end (uniform)
    prefix_len_fixed: float = 0.5   # L for scheduler=fixed


@dataclass
class AdvantageConfig:
    estimator: str = "dr-grpo"      # dr-grpo (r - mean) | grpo ((r - mean) / (std + eps))
    grouping: str = "all"           # all (the paper's text) | separate (released code, spec's reading) | separate-released
    std_eps: float = 1e-6           # added to the group std by estimator grpo


@dataclass
class LossConfig:
    clip_eps_low: float = 0.2       # PPO clip: ratio floor 1 - clip_eps_low (for A < 0)
    clip_eps_high: float = 0.2      # PPO clip: ratio ceiling 1 + clip_eps_high (for A > 0)
    aggregation: str = "dr-grpo"    # dr-grpo (sum / (max_response_tokens * responses)) | token-mean | seq-mean
    kl_coef: float = 0.0            # KL to the initial policy (k3 estimator); 0 = no reference model
    sft_coef: float = 0.1           # lambda of the SFT term for algo rft-sft-loss
    luffy_gamma: float = 0.1        # gamma of LUFFY's policy shaping p / (p + gamma)


@dataclass
class PrefixSelectionConfig:
    mode: str = "top"               # top | bottom | random | all | none | static:W | onpolicy-clip
    keep_ratio: float = 0.2         # share of prefix tokens kept by top / bottom / random
    scope: str = "mini-batch"       # mini-batch (the paper) | micro-batch (the released code)


@dataclass
class OptimConfig:
    lr: float = 1e-4                # AdamW learning rate after warm-up
    weight_decay: float = 0.0       # AdamW weight decay
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    grad_clip_norm: float = 1.0     # clip the global gradient norm to this (0 = no clipping)
    warmup_steps: int = 5           # steps of linear learning-rate warm-up


@dataclass
class TrainConfig:
    steps: int = 200                # RL (or SFT) steps; each step samples prompts_per_step prompts (default run: ~7-9 min on 2 CPU cores)
    prompts_per_step: int = 16      # B
    ppo_epochs: int = 1             # passes over each rollout batch
    mini_batches: int = 1           # optimizer steps per epoch
    micro_batch_responses: int = 0  # responses per forward/backward, length-sorted buckets (0 = the whole mini-batch in buckets of 16)
    max_wall_minutes: float = 0.0   # stop with a resumable checkpoint after this much wall time in one process (0 = no limit)
    sft_steps: int = 100            # first-stage steps for algo sft-then-rft
    log_rollouts_every: int = 10    # write a few rollouts to rollouts.jsonl every N steps
    checkpoint_every: int = 50      # resumable checkpoint every N steps, step 0 included (0 = none on a step interval)
    checkpoint_every_minutes: float = 30.0  # and after this much wall time since the last one (0 = none on a clock)
    keep_checkpoints: int = 2       # resumable checkpoints kept, newest first (checkpoints/step-NNNNNN)
    run_dir: str = ""               # default: runs/<algo>-<domain>-<timestamp>
    report_to: str = "none"         # none | wandb | tensorboard
    threads: int = 1                # torch threads (0 = torch's default); tiny models run best on one
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more time
    compile: bool = False           # torch.compile (inductor, dynamic shapes) the training forward and backward (~80 CPU s once); backend none, no gradient checkpointing
    diagnostics_every: int = 10     # sft_loss_demos and the π_old entropy statistics every N steps, step 0 included (0 = never; null between)
    max_skipped_steps: int = 5      # stop after this many steps in a row skipped for a non-finite gradient (0 = never)
    reward_answer_format: str = "any"  # math reward: any (a box, else math-verify reads the answer) | strict-boxed


@dataclass
class EvalConfig:
    samples: int = 8                # k for avg@k: training's before/after accuracy; `prefixrft eval` on every benchmark (0 = each benchmark's own k)
    temperature: float = 1.0        # sampling temperature for avg@k (`prefixrft eval` starts from the paper's 0.6)
    top_p: float = 1.0              # nucleus sampling at evaluation (1 = off)
    max_response_tokens: int = 64   # generation budget at evaluation
    batch_size: int = 64            # completions `prefixrft eval` generates together
    greedy: bool = True             # also report greedy accuracy
    answer_after_think: bool = True # read the final answer after </think> when present


# `prefixrft eval` starts from the paper's evaluation protocol (LUFFY: temperature 0.6, each
# benchmark's own k) instead of training's held-out check; a YAML file and --set override it.
EVAL_COMMAND_DEFAULTS = ("eval.temperature=0.6", "eval.samples=0")


@dataclass
class DistributedConfig:
    backend: str = "none"           # none | ddp | fsdp2 | deepspeed (several processes: launch with torchrun or deepspeed)
    zero_stage: int = 2             # DeepSpeed ZeRO stage 1 | 2 | 3 (backend deepspeed)
    timeout_minutes: float = 120.0  # collective timeout; rank 0 scores the held-out set while the others wait


@dataclass
class Config:
    algo: str = "prefix-rft"        # prefix-rft | rft | sft | rft-sft-loss | luffy | sft-then-rft | drpo | relift
    domain: str = "math"            # math | code | a plugin verifier's name
    seed: int = 0                   # seeds every random choice (data order, sampling, prefix lengths)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    prefix: PrefixConfig = field(default_factory=PrefixConfig)
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    selection: PrefixSelectionConfig = field(default_factory=PrefixSelectionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "algo": ALGORITHM_NAMES,
    "model.dtype": ("auto", "float32", "bfloat16", "float16"),
    "model.device": ("auto", "cpu", "cuda"),
    "distributed.backend": ("none", "ddp", "fsdp2", "deepspeed"),
    "data.prompt_template": ("plain", "chat", "luffy"),
    "data.toy_difficulty": DIFFICULTIES,
    "data.toy_eval_difficulty": ("same",) + DIFFICULTIES,
    "rollout.engine": ("hf", "vllm"),
    "train.reward_answer_format": ("any", "strict-boxed"),
    "prefix.scheduler": ("cosine", "uniform", "linear", "fixed"),
    "advantage.estimator": ("dr-grpo", "grpo"),
    "advantage.grouping": ("all", "separate", "separate-released"),
    "loss.aggregation": ("dr-grpo", "token-mean", "seq-mean"),
    "selection.scope": ("mini-batch", "micro-batch"),
    "train.report_to": ("none", "wandb", "tensorboard"),
}


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric field: low <= v <= high (an open end excludes its bound)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


COUNT, POSITIVE_COUNT = Range(0), Range(1)      # integers: 0 allowed (its meaning is in the comment) / >= 1
NON_NEGATIVE, POSITIVE = Range(0.0), Range(0.0, low_open=True)
SHARE, OPEN_SHARE = Range(0.0, 1.0), Range(0.0, 1.0, low_open=True)  # [0, 1] / (0, 1]

# Every int and float field's valid values, checked at load (a test checks that no numeric field is
# missing here). Cross-field rules (hybrid < rollouts, low_end <= high, ...) are in `validate`.
RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32 - 1),
    "data.toy_train_problems": POSITIVE_COUNT, "data.eval_problems": COUNT, "data.max_prompt_tokens": POSITIVE_COUNT,
    "data.toy_demo_share": SHARE, "data.toy_wrong_demo_share": SHARE,
    "rollout.rollouts_per_prompt": POSITIVE_COUNT, "rollout.hybrid_rollouts_per_prompt": COUNT,
    "rollout.temperature": NON_NEGATIVE, "rollout.top_p": OPEN_SHARE, "rollout.max_response_tokens": POSITIVE_COUNT,
    "rollout.vllm_gpu_memory_utilization": OPEN_SHARE,
    "prefix.prefix_len_high": SHARE, "prefix.prefix_len_low_end": SHARE, "prefix.prefix_len_fixed": SHARE,
    "advantage.std_eps": NON_NEGATIVE,
    "loss.clip_eps_low": Range(0.0, 1.0, high_open=True), "loss.clip_eps_high": NON_NEGATIVE,
    "loss.kl_coef": NON_NEGATIVE, "loss.sft_coef": NON_NEGATIVE, "loss.luffy_gamma": POSITIVE,
    "selection.keep_ratio": OPEN_SHARE,
    "optim.lr": POSITIVE, "optim.weight_decay": NON_NEGATIVE, "optim.betas": Range(0.0, 1.0, high_open=True),
    "optim.grad_clip_norm": NON_NEGATIVE, "optim.warmup_steps": COUNT,
    "train.steps": POSITIVE_COUNT, "train.prompts_per_step": POSITIVE_COUNT, "train.ppo_epochs": POSITIVE_COUNT,
    "train.mini_batches": POSITIVE_COUNT, "train.micro_batch_responses": COUNT, "train.max_wall_minutes": NON_NEGATIVE,
    "train.sft_steps": COUNT, "train.log_rollouts_every": POSITIVE_COUNT, "train.checkpoint_every": COUNT,
    "train.checkpoint_every_minutes": NON_NEGATIVE, "train.keep_checkpoints": POSITIVE_COUNT,
    "train.threads": Range(0, 1024), "train.max_skipped_steps": COUNT, "train.diagnostics_every": COUNT,
    "eval.samples": COUNT, "eval.temperature": NON_NEGATIVE, "eval.top_p": OPEN_SHARE,
    "eval.max_response_tokens": POSITIVE_COUNT, "eval.batch_size": POSITIVE_COUNT,
    "distributed.zero_stage": Range(1, 3), "distributed.timeout_minutes": POSITIVE,
}


SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"


def shipped_configs() -> dict[str, Path]:
    """The configs inside the package, by name: 'toy-math', 'paper/prefix-rft', ..."""
    return {path.relative_to(SHIPPED_CONFIGS).with_suffix("").as_posix(): path
            for path in sorted(SHIPPED_CONFIGS.rglob("*.yaml"))}


def resolve_config_path(name: str | Path) -> Path:
    """A YAML file on disk, else a shipped config's name (with or without .yaml)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_configs()
    key = path.as_posix().removesuffix(".yaml")
    if key in shipped:
        return shipped[key]
    raise UserError(f"--config {name}: no such file or shipped config{did_you_mean(key, shipped)}; "
                    f"shipped: {', '.join(shipped)} (prefixrft configs lists them)")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: tuple[str, ...] = (), options: list[str] | None = None) -> Config:
    """Defaults, a command's own defaults (`base`), the YAML file (or shipped config), its named `options`,
    then `a.b=value` overrides; validated.

    `options` are `key=value` items from a command's own flags (`--steps 5`); errors name them "command line".
    """
    cfg = Config()
    origins: dict[str, str] = {}  # dotted key -> where its value came from (file:line or the override)
    for item in base:
        key, _, raw = item.partition("=")
        set_value(cfg, key, parse_value(raw, "defaults"), "defaults")
    if path is not None:
        path = resolve_config_path(path)
        data = read_yaml(path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping of config keys at the top level")
        _merge(cfg, data, str(path), "", origins)
    for item in options or []:
        key, _, raw = item.partition("=")
        set_value(cfg, key, parse_value(raw, "command line"), "command line", origins)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"override {item!r}: expected key=value, e.g. train.steps=50")
        where = f"override {item!r}"
        set_value(cfg, key.strip(), parse_value(raw, where), where, origins)
    validate(cfg, origins)
    return cfg


def set_value(cfg: Config, dotted: str, value: Any, where: str, origins: dict[str, str] | None = None) -> None:
    """Set one dotted key, checking the key exists and the value has the field's type."""
    node: Any = cfg
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names:
            close = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
            guess = ".".join(parts[:depth] + close + parts[depth + 1:]) if close else ""
            valid = ", ".join(names)
            what = (f"key {dotted!r}" if depth == len(parts) - 1
                    else f"section {'.'.join(parts[:depth + 1])!r} in {dotted!r}")
            raise UserError(f"{where}: unknown config {what}{f' (did you mean {guess!r}?)' if guess else ''}; "
                            f"valid here: {valid}")
        if depth == len(parts) - 1:
            hint = typing.get_type_hints(type(node))[part]
            if dataclasses.is_dataclass(hint):
                if not isinstance(value, dict):
                    raise UserError(f"{where}: {dotted} is a section; give its keys")
                _merge(getattr(node, part), value, where, dotted + ".", origins)
            else:
                setattr(node, part, _coerce(value, hint, dotted, where))
                if origins is not None:
                    origins[dotted] = where
        else:
            node = getattr(node, part)
            if not dataclasses.is_dataclass(node):
                raise UserError(f"{where}: {'.'.join(parts[:depth + 1])} is not a section")


def _merge(node: Any, data: dict, where: str, prefix: str, origins: dict[str, str] | None = None) -> None:
    """Set the keys of `data`, relative to the section `node` (its dotted name is `prefix`)."""
    names = [f.name for f in dataclasses.fields(node)]
    hints = typing.get_type_hints(type(node))
    lines = getattr(data, "lines", {})
    for key, value in data.items():
        at = f"{where}:{lines[key]}" if key in lines else where
        if key not in names:
            kind = "section" if isinstance(value, dict) else "key"
            raise UserError(f"{at}: unknown config {kind} {prefix + str(key)!r}"
                            f"{did_you_mean(str(key), names)}; valid here: {', '.join(names)}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise UserError(f"{at}: {prefix}{key} is a section; give its keys")
            _merge(getattr(node, key), value, where, f"{prefix}{key}.", origins)
        else:
            setattr(node, key, _coerce(value, hints[key], prefix + key, at))
            if origins is not None:
                origins[prefix + key] = at


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(typing.get_args(hint)):
            raise UserError(f"{where}: {key} expects a list of {len(typing.get_args(hint))} numbers")
        return tuple(_coerce(v, t, key, where) for v, t in zip(value, typing.get_args(hint)))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: {key} expects true or false, got {value!r}")
    if hint is int:
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            value = int(value)  # `1e3` steps
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= 2**63:
                raise UserError(f"{where}: {key}={value} is too large")
            return value
        raise UserError(f"{where}: {key} expects an integer, got {_short(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if abs(value) >= 2**63 or not math.isfinite(value):
                raise UserError(f"{where}: {key} expects a finite number, got {_short(value)}")
            return float(value)
        raise UserError(f"{where}: {key} expects a number, got {_short(value)}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{where}: {key} expects a string, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(cfg: Config, origins: dict[str, str] | None = None) -> None:
    """Check choices, ranges and the rules between fields; `origins` names where each value was given."""
    origins = origins or {}
    for dotted, choices in CHOICES.items():
        value = get_value(cfg, dotted)
        if value not in choices:
            raise UserError(f"{origins.get(dotted, 'config')}: {dotted}={_short(value)} is not valid"
                            f"{did_you_mean(value, choices)}; valid: {', '.join(choices)}")
    for dotted, valid in RANGES.items():
        value = get_value(cfg, dotted)
        if any(v not in valid for v in (value if isinstance(value, tuple) else (value,))):
            raise UserError(f"{origins.get(dotted, 'config')}: {dotted}={value!r} is out of range; valid: {valid}")
    selection = selection_of(cfg)
    algorithm = get_algorithm(cfg.algo)
    if selection.candidates == "on-policy" and not algorithm.onpolicy_clip:
        raise UserError(f"config selection.mode=onpolicy-clip is the paper's control for algo rft, not {cfg.algo}")
    r = cfg.rollout
    if r.rollouts_per_prompt < 1:
        raise UserError("config rollout.rollouts_per_prompt must be at least 1")
    if algorithm.rollouts == "hybrid" and not 1 <= r.hybrid_rollouts_per_prompt < r.rollouts_per_prompt:
        raise UserError("config rollout.hybrid_rollouts_per_prompt must be at least 1 and below "
                        f"rollout.rollouts_per_prompt ({r.rollouts_per_prompt}) for algo {cfg.algo}")
    if algorithm.rollouts == "shared-prefix" and cfg.advantage.grouping != "all":
        raise UserError(f"config advantage.grouping={cfg.advantage.grouping} needs ordinary rollouts; algo "
                        f"{cfg.algo} starts every rollout from a prefix (use advantage.grouping=all)")
    p = cfg.prefix
    if not 0.0 <= p.prefix_len_low_end <= p.prefix_len_high <= 1.0:
        raise UserError("config prefix: need 0 <= prefix_len_low_end <= prefix_len_high <= 1")
    if not 0.0 < cfg.selection.keep_ratio <= 1.0:
        raise UserError("config selection.keep_ratio must be in (0, 1]")
    for key in ("train.steps", "train.prompts_per_step", "train.ppo_epochs", "train.mini_batches",
                "rollout.max_response_tokens", "eval.max_response_tokens", "eval.batch_size"):
        if get_value(cfg, key) < 1:
            raise UserError(f"config {key} must be at least 1")
    if cfg.eval.samples < 0:
        raise UserError("config eval.samples must be at least 1 (or 0: each benchmark's own k, for prefixrft eval)")
    if cfg.eval.temperature < 0 or not 0.0 < cfg.eval.top_p <= 1.0:
        raise UserError("config eval: need temperature >= 0 and 0 < top_p <= 1")
    _validate_compile(cfg, origins)
    if cfg.train.prompts_per_step % cfg.train.mini_batches:
        raise UserError("config train.prompts_per_step must be a multiple of train.mini_batches")
    _validate_toy(cfg)


def _validate_compile(cfg: Config, origins: dict[str, str]) -> None:
    """train.compile only where it was tested: one process, activations kept (no gradient checkpointing)."""
    t, where = cfg.train, origins.get("train.compile", "config")
    if t.compile and cfg.distributed.backend != "none":
        raise UserError(f"{where}: train.compile=true is tested with distributed.backend=none only, not "
                        f"{cfg.distributed.backend} (drop one of the two)")
    if t.compile and t.gradient_checkpointing:
        raise UserError(f"{where}: train.compile=true is not tested with train.gradient_checkpointing=true "
                        "(drop one of the two)")


def _validate_toy(cfg: Config) -> None:
    """The toy options (read in train/setup.py:toy_options) against the domain, at load time."""
    d = cfg.data
    held_out = d.toy_difficulty if d.toy_eval_difficulty == "same" else d.toy_eval_difficulty
    for source, options in ((d.train, ToyOptions(d.toy_difficulty, d.toy_demo_share, d.toy_wrong_demo_share)),
                            (d.eval, ToyOptions(held_out))):
        if source == "toy" and cfg.domain in ("math", "code"):
            try:
                check_options(cfg.domain, options)
            except ValueError as err:
                raise UserError(f"config data.toy_*: {err} (domain {cfg.domain})") from None


def selection_of(cfg: Config) -> Selection:
    """selection.mode as its typed choice; a UserError naming the key when it is not one."""
    mode = cfg.selection.mode
    try:
        return parse_selection(mode)
    except ValueError:
        raise UserError(f"config selection.mode={mode!r} is not valid{did_you_mean(mode, SELECTION_MODES)}; "
                        f"valid: {', '.join(SELECTION_MODES)}") from None


def max_sequence_tokens(cfg: Config) -> int:
    """The longest prompt + response a run can produce: the rollout engine's max_model_len."""
    return cfg.data.max_prompt_tokens + max(cfg.rollout.max_response_tokens, cfg.eval.max_response_tokens)


def get_value(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def to_dict(cfg: Config) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, tuple):
            return list(value)
        return value

    return {k: ({kk: convert(vv) for kk, vv in v.items()} if isinstance(v, dict) else convert(v))
            for k, v in dataclasses.asdict(cfg).items()}


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def reference_markdown() -> str:
    """docs/config.md, rendered from this file (config_doc.py does the rendering)."""
    from prefixrft_cli.config_doc import reference_markdown as render

    return render()


if __name__ == "__main__":
    print(reference_markdown(), end="")
