"""Build the bundled toy base model, deterministically, with this same tool.

1. Train a byte-level BPE tokenizer (Qwen2's split regex: digits one by one) on toy
   problems and demonstrations of both domains, with a small chat template.
2. Initialise a tiny Llama (about 1.05M parameters) from a fixed seed and save it as an
   ordinary model folder (`toy-init`).
3. Warm it up with `prefixrft train --algo sft` on toy demonstrations of both domains
   (4000 math, 2000 code problems) for a fixed 800 steps of 96 prompts, so the base is
   weak but not hopeless: it has the format and some arithmetic, and a lot left to learn.

Run: `python -m prefixrft_cli.toy_base --output prefixrft_cli/assets/toy-base`
(about ten minutes on one core). The result is committed, so training starts at once.
Test: tests/test_models.py (tokenizer round trip through a model folder; a small build).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
VOCAB_SIZE = 384
MODEL_SHAPE = dict(hidden_size=144, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=4, max_position_embeddings=512)
WARMUP_OVERRIDES = ["algo=sft", "domain=math", "train.steps=800", "train.prompts_per_step=96",
                    "optim.lr=0.002", "optim.warmup_steps=20", "train.max_wall_minutes=0", "train.threads=1",
                    "eval.samples=4", "data.eval_problems=200"]
WARMUP_PROBLEMS = {"math": 4000, "code": 2000}  # toy training problems of each domain in the warm-up set


def corpus(count: int = 2000) -> list[str]:
    """Toy text of both domains: prompts and demonstrations, what the tokenizer must cover."""
    from prefixrft_cli.toy_task import generate_problems

    texts = []
    for domain in ("math", "code"):
        for problem in generate_problems(domain, count, seed=99, split="train"):
            texts += [problem.problem + "\n", problem.demonstrations[0].text]
    return texts


def train_tokenizer(folder: Path):
    """A byte-level BPE saved as a PreTrainedTokenizerFast folder; returns the loaded tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def build_init(folder: Path, seed: int = 0) -> None:
    """Tokenizer plus a freshly initialised tiny Llama, saved as a model folder."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(folder)
    config = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=True,
                         bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **MODEL_SHAPE)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)


def build(output: Path, seed: int = 0, extra_overrides: list[str] | None = None) -> RunSummary:
    """toy-init, then the SFT warm-up through the training library; the checkpoint lands in `output`."""
    import torch

    from prefixrft_cli.config import load_config
    from prefixrft_cli.train import run_training

    from prefixrft_cli.jsonio import atomic_write_jsonl
    from prefixrft_cli.toy_task import generate_problems

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        init = Path(tmp) / "toy-init"
        build_init(init, seed)
        mixed = Path(tmp) / "warmup.jsonl"  # both domains, so one base serves --domain math and code
        atomic_write_jsonl(mixed, (p.to_json() for domain, count in WARMUP_PROBLEMS.items()
                                   for p in generate_problems(domain, count, seed=seed, split="train")))
        overrides = WARMUP_OVERRIDES + [f"model.name_or_path={init}", f"train.run_dir={Path(tmp) / 'run'}",
                                        f"data.train={mixed}", f"seed={seed}"] + list(extra_overrides or [])
        summary = run_training(load_config(None, overrides), show=True)
        if output.exists():
            shutil.rmtree(output)
        shutil.copytree(Path(summary.checkpoint), output)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    summary = build(args.output, args.seed)
    print(f"toy base written to {args.output}: toy-math avg@4 {summary.accuracy_after:.1%}, "
          f"greedy {summary.greedy_accuracy_after:.1%}")


if __name__ == "__main__":
    main()
