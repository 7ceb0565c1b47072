"""Cross-check against a peer: our `rft` Dr. GRPO loss equals TRL GRPOTrainer's `dr_grpo` loss.

Ours: compute_advantages(dr-grpo) -> ppo_clip_loss -> aggregate(dr-grpo). TRL's: its own
`_generate_and_score_completions` (advantages from our rewards, scale_rewards="none") and its
own `_compute_loss` (loss_type="dr_grpo", beta=0), on a GRPOTrainer built around a tiny local
Llama (hidden 32, 2 layers, vocab 64) and a WordLevel tokenizer: no download.

The normaliser. TRL 1.16 divides each micro-batch's masked sum by
    micro-batch responses × max_completion_length × gradient_accumulation_steps
(and DDP then averages over processes). We divide by
    max_response_tokens × total_responses of the mini-batch (passed by the caller).
They agree when the mini-batch is split into equal micro-batches (total = micro × steps),
which is what the micro-batch test below uses; with unequal micro-batches TRL weighs a
response in a small micro-batch more, ours weighs every response alike.

Skipped when trl is not installed (`pip install -e .[dev]` installs it).
"""

from __future__ import annotations

import pytest

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

import torch  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from prefixrft_cli.algo import aggregate, compute_advantages, ppo_clip_loss  # noqa: E402

G = 4                 # rollouts per prompt
MAX_TOKENS = 6        # max_completion_length = max_response_tokens
EPS = 0.2
REWARDS = [[1.0, 0.0, 0.0, 1.0],     # mean 0.5 -> A = [0.5, -0.5, -0.5, 0.5]
           [1.0, 1.0, 0.0, 1.0],     # mean 0.75 -> A = [0.25, 0.25, -0.75, 0.25]
           [0.5, 0.5, 0.5, 0.5]]     # zero variance -> A = 0
PROMPTS = ["w3 w4 w5", "w7 w8", "w9 w10 w11 w12"]
LENGTHS = [6, 3, 5, 1, 6, 2, 4, 6, 6, 5, 2, 3]   # response lengths: the loss mask has padding


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory):
    words = ["<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(61)]
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1)
    model = LlamaForCausalLM(config)
    pending: list[float] = []

    def preset_reward(completions, **_):
        return [pending.pop(0) for _ in completions]

    # bf16=False: TRL 1.16 runs its forward under bf16 autocast by default, even on CPU.
    args = trl.GRPOConfig(output_dir=str(tmp_path_factory.mktemp("trl")), per_device_train_batch_size=len(LENGTHS),
                          num_generations=G, max_completion_length=MAX_TOKENS, loss_type="dr_grpo",
                          scale_rewards="none", beta=0.0, epsilon=EPS, temperature=1.0, report_to="none",
                          use_cpu=True, bf16=False, save_strategy="no", disable_dropout=True)
    dataset = datasets.Dataset.from_dict({"prompt": PROMPTS})
    out = trl.GRPOTrainer(model=model, reward_funcs=preset_reward, args=args, train_dataset=dataset,
                          processing_class=tokenizer)
    out.model.train()
    pending[:] = [r for group in REWARDS for r in group]
    rows = [{"prompt": p} for p in PROMPTS for _ in range(G)]
    out.crosscheck_inputs = out._generate_and_score_completions(rows)   # TRL's advantages from REWARDS
    return out


def prepared_inputs(trainer, seed: int = 0) -> dict:
    """TRL's generated batch with a padded loss mask and old log-probs perturbed so every clip case occurs."""
    inputs = dict(trainer.crosscheck_inputs)
    t = inputs["completion_ids"].shape[1]
    inputs["completion_mask"] = (torch.arange(t)[None, :] < torch.tensor(LENGTHS)[:, None]).long()  # [N, L]
    with torch.no_grad():
        logp = our_logps(trainer.model, inputs)  # [N, L]
    noise = torch.rand(logp.shape, generator=torch.Generator().manual_seed(seed)) - 0.5  # [N, L] in [-0.5, 0.5)
    inputs["old_per_token_logps"] = logp + noise  # ratios exp(-noise) in (0.61, 1.65]
    return inputs


def our_logps(model, inputs: dict) -> torch.Tensor:
    """log π(y_k) of the completion tokens from a plain forward pass [N, L]."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)  # [N,P+T]
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)  # [N,P+T]
    t = inputs["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=attention).logits[:, -t - 1:-1]  # [N,T,V]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, inputs["completion_ids"][..., None])[..., 0]


def our_loss(logp: torch.Tensor, inputs: dict, rows: slice = slice(None)) -> torch.Tensor:
    """Our rft loss on the responses `rows` of the mini-batch, normalised by the mini-batch's size."""
    adv = compute_advantages(torch.tensor(REWARDS), torch.zeros(len(REWARDS), G, dtype=torch.bool))  # [B,G]
    per_token_adv = adv.response.reshape(-1)[rows, None].expand_as(logp)  # [N, L]
    token_loss, _ = ppo_clip_loss(logp, inputs["old_per_token_logps"], per_token_adv, EPS, EPS)  # [N, L]
    return aggregate(token_loss, inputs["completion_mask"].float(), "dr-grpo", MAX_TOKENS,
                     total_responses=len(LENGTHS))


def test_advantages_agree(trainer) -> None:
    ours = compute_advantages(torch.tensor(REWARDS), torch.zeros(len(REWARDS), G, dtype=torch.bool))
    theirs = trainer.crosscheck_inputs["advantages"]  # [N]
    assert torch.allclose(ours.response.reshape(-1), theirs, atol=1e-7)
    assert ours.response.reshape(-1).tolist() == [0.5, -0.5, -0.5, 0.5, 0.25, 0.25, -0.75, 0.25, 0, 0, 0, 0]


def test_loss_and_logprob_gradient_agree_on_identical_logprobs(trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = prepared_inputs(trainer)
    base = our_logps(trainer.model, inputs).detach()  # [N, L]
    theirs_logp = base.clone().requires_grad_(True)
    monkeypatch.setattr(trainer, "_get_per_token_logps_and_entropies",
                        lambda *a, **k: (theirs_logp, torch.zeros_like(base), None))
    monkeypatch.setattr(trainer, "current_gradient_accumulation_steps", 1, raising=False)
    theirs = trainer._compute_loss(trainer.model, inputs)
    theirs.backward()
    ours_logp = base.clone().requires_grad_(True)
    ours = our_loss(ours_logp, inputs)
    ours.backward()
    # both branches of the clip are exercised: some tokens have zero gradient, others not
    _, clipped = ppo_clip_loss(base, inputs["old_per_token_logps"], torch.ones_like(base), EPS, EPS)
    assert 0 < int(clipped.sum()) < clipped.numel()
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    assert torch.allclose(ours_logp.grad, theirs_logp.grad, atol=1e-6)
    assert ours_logp.grad.abs().sum() > 0


def test_loss_and_parameter_gradients_agree_through_the_model(trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    """TRL's fused LM head vs our logits -> log_softmax path, gradients on every weight."""
    inputs = prepared_inputs(trainer, seed=1)
    model = trainer.model
    monkeypatch.setattr(trainer, "current_gradient_accumulation_steps", 1, raising=False)
    model.zero_grad()
    theirs = trainer._compute_loss(model, inputs)
    theirs.backward()
    theirs_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ours = our_loss(our_logps(model, inputs), inputs)
    ours.backward()
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    for mine, peer in zip((p.grad for p in model.parameters()), theirs_grads):
        assert torch.allclose(mine, peer, atol=1e-6)
    model.zero_grad()


def test_equal_micro_batches_agree_with_gradient_accumulation(trainer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two micro-batches of 6: TRL normalises by 6 × 6 × 2 steps, we by 6 tokens × 12 responses."""
    inputs = prepared_inputs(trainer, seed=2)
    monkeypatch.setattr(trainer, "current_gradient_accumulation_steps", 2, raising=False)
    ours_total, theirs_total = 0.0, 0.0
    for rows in (slice(0, 6), slice(6, 12)):
        part = {k: (v[rows] if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in inputs.items()}
        theirs_total += trainer._compute_loss(trainer.model, part).item()
        with torch.no_grad():
            ours_total += our_loss(our_logps(trainer.model, part), part, rows).item()
    with torch.no_grad():
        whole = our_loss(our_logps(trainer.model, inputs), inputs).item()
    assert ours_total == pytest.approx(theirs_total, abs=1e-6)
    assert ours_total == pytest.approx(whole, abs=1e-6)
