"""`prefixrft inspect-entropy`: how uncertain a policy is on the tokens of expert demonstrations.

For each demonstration y* of a problem x, one teacher-forced forward pass over x ⊕ y*
gives, at every demonstration position k, the policy's next-token distribution π(·|x, y*_<k):
its entropy H_k (algo.entropy.token_entropy), its top-1 probability, whether the top-1
token is y*_k, and p(y*_k). Over all analysed tokens pooled together (the paper's
mini-batch scope):

- the slice table (the paper's Table 9): lowest-entropy 20%, middle 60%, highest-entropy
  20% of tokens, each with mean entropy, mean top-1 probability and the share where
  top-1 = demonstration token. The highest slice is exactly what `selection.mode=top`,
  `keep_ratio=0.2` keeps (algo.entropy.select_tokens: ceil(20%), ties to earlier tokens);
- the retained-ratio table (Table 10): keeping the top r of tokens by entropy, the share
  of the prefix-side gradient signal Σ_k (1 − p(y*_k)) they carry. 1 − p(y*_k) is the
  size of the target-logit gradient of −log p(y*_k), what an update on that token pushes.

The whole demonstration is analysed (every prefix is cut from it), capped at
`max_demo_tokens` tokens. Outputs: a JSON report, an HTML page with tokens coloured by
entropy, and a rich terminal view (same colours).

Leaves out: batching several sequences per forward (one sequence at a time keeps the
[tokens, vocabulary] logits of a long demonstration the only large tensor).
Test: tests/test_inspect_entropy.py.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from prefixrft_cli.records import Problem

SLICES = (("Lowest-entropy 20%", "bottom"), ("Middle 60%", "middle"), ("Highest-entropy 20%", "top"))
RETAINED_RATIOS = (0.2, 0.5, 0.8, 1.0)
SLICE_RATIO = 0.2


@dataclass(frozen=True)
class TokenStat:
    position: int            # index in the demonstration
    token_id: int
    text: str                # the demonstration token, decoded alone
    entropy: float           # nats
    top1_prob: float
    top1_text: str
    top1_is_demo: bool
    demo_prob: float         # p(y*_k)


@dataclass
class DemoView:
    problem_id: str
    demonstration: int       # index among the problem's demonstrations
    prompt_tokens: int
    tokens: list[TokenStat]


@dataclass(frozen=True)
class SliceRow:
    name: str
    tokens: int
    mean_entropy: float
    mean_top1_prob: float
    top1_is_demo_share: float


@dataclass(frozen=True)
class RetainedRow:
    ratio: float             # share of tokens kept, highest entropy first
    tokens: int
    signal_share: float      # Σ_kept (1 − p(y*)) / Σ_all (1 − p(y*))


@dataclass
class EntropyReport:
    model: str
    template: str
    demonstrations: list[DemoView]
    slices: list[SliceRow]
    retained: list[RetainedRow]

    @property
    def token_count(self) -> int:
        return sum(len(d.tokens) for d in self.demonstrations)

    def to_json(self) -> dict:
        return asdict(self)


def inspect_demonstration(model, tokenizer, prompt_ids: Sequence[int], demo_ids: Sequence[int]) -> list[TokenStat]:
    """Teacher-forced statistics of every demonstration token (one forward pass)."""
    import torch

    from prefixrft_cli.algo.entropy import token_entropy

    ids = torch.tensor([list(prompt_ids) + list(demo_ids)], dtype=torch.long)      # [1, P+D]
    n_demo = len(demo_ids)
    with torch.no_grad():
        try:
            logits = model(input_ids=ids, logits_to_keep=n_demo + 1).logits          # [1, D+1, V]
        except TypeError:  # a model class without logits_to_keep: all positions
            logits = model(input_ids=ids).logits                                   # [1, P+D, V]
        logits = logits[0, -(n_demo + 1):-1].float()                               # [D, V] predicts demo tokens
        entropy = token_entropy(logits)                                            # [D]
        probs = torch.softmax(logits, dim=-1)                                      # [D, V]
        top1_prob, top1 = probs.max(dim=-1)                                        # [D], [D]
        target = torch.tensor(list(demo_ids), dtype=torch.long)                    # [D]
        demo_prob = probs.gather(-1, target[:, None])[:, 0]                        # [D]
    stats = []
    for k, token in enumerate(demo_ids):
        stats.append(TokenStat(k, int(token), tokenizer.decode([int(token)]), float(entropy[k]),
                               float(top1_prob[k]), tokenizer.decode([int(top1[k])]), int(top1[k]) == int(token),
                               float(demo_prob[k])))
    return stats


def slice_table(entropy, top1_prob, top1_is_demo) -> list[SliceRow]:
    """Lowest 20% / middle 60% / highest 20% of tokens by entropy (tensors [N])."""
    import torch

    from prefixrft_cli.algo.entropy import select_tokens

    everything = torch.ones((1, entropy.numel()), dtype=torch.bool)                # [1, N]
    flat = entropy.reshape(1, -1)                                                  # [1, N]
    low = select_tokens(flat, everything, "bottom", SLICE_RATIO)[0]                # [N]
    high = select_tokens(flat, everything, "top", SLICE_RATIO)[0]                  # [N]
    masks = {"bottom": low, "middle": ~low & ~high, "top": high}
    rows = []
    for name, key in SLICES:
        mask = masks[key]
        count = int(mask.sum())
        mean = (lambda t: float(t[mask].float().mean()) if count else float("nan"))
        rows.append(SliceRow(name, count, mean(entropy), mean(top1_prob), mean(top1_is_demo)))
    return rows


def retained_table(entropy, demo_prob, ratios: Sequence[float] = RETAINED_RATIOS) -> list[RetainedRow]:
    """Share of Σ(1 − p(y*)) carried by the top r highest-entropy tokens, for each r."""
    import torch

    from prefixrft_cli.algo.entropy import select_tokens

    everything = torch.ones((1, entropy.numel()), dtype=torch.bool)                # [1, N]
    signal = (1.0 - demo_prob.double()).clamp(min=0.0)                             # [N]
    total = float(signal.sum())
    rows = []
    for ratio in ratios:
        kept = select_tokens(entropy.reshape(1, -1), everything, "top", ratio)[0]  # [N]
        share = float(signal[kept].sum()) / total if total > 0 else float("nan")
        rows.append(RetainedRow(ratio, int(kept.sum()), share))
    return rows


def inspect_entropy(model, tokenizer, problems: Sequence[Problem], template: str, model_name: str,
                    max_demo_tokens: int = 1024, progress=None) -> EntropyReport:
    """Statistics of every demonstration of `problems`, and the two tables over all their tokens."""
    import torch

    from prefixrft_cli.errors import UserError
    from prefixrft_cli.prompts import encode_demonstration, encode_prompt

    views = []
    was_training = model.training
    model.eval()
    try:
        for problem in problems:
            prompt = encode_prompt(problem, tokenizer, template)
            for index, demo in enumerate(problem.demonstrations):
                demo_ids = encode_demonstration(demo.text, tokenizer)[:max_demo_tokens]
                views.append(DemoView(problem.id, index, len(prompt),
                                      inspect_demonstration(model, tokenizer, prompt, demo_ids)))
            if progress is not None:
                progress(1)
    finally:
        model.train(was_training)
    tokens = [t for view in views for t in view.tokens]
    if not tokens:
        raise UserError("no demonstrations to inspect: the problems given have none "
                        "(fill them with `prefixrft prepare --demonstrator ...`)")
    entropy = torch.tensor([t.entropy for t in tokens])                              # [N]
    top1_prob = torch.tensor([t.top1_prob for t in tokens])                          # [N]
    top1_is_demo = torch.tensor([t.top1_is_demo for t in tokens])                    # [N]
    demo_prob = torch.tensor([t.demo_prob for t in tokens])                          # [N]
    return EntropyReport(model_name, template, views, slice_table(entropy, top1_prob, top1_is_demo),
                         retained_table(entropy, demo_prob))


def load_demonstrated_problems(source: str, domain: str, split: str, limit: int, seed: int):
    """The first `limit` problems with at least one demonstration, from any problem source (data/sources.py)."""
    from prefixrft_cli.data.sources import read_problems, resolve_source
    from prefixrft_cli.errors import UserError

    resolved = resolve_source(source)
    problems = read_problems(resolved, domain, False, limit, seed, split)
    if resolved.kind == "toy":
        return problems
    problems = [p for p in problems if p.demonstrations][:limit]
    if not problems:
        raise UserError(f"--data {source}: no problem has a demonstration "
                        "(fill them with `prefixrft prepare --demonstrator ...`)")
    return problems


def run_inspect_entropy(cfg, split: str, limit: int, max_demo_tokens: int, output_dir, progress=None) -> EntropyReport:
    """`prefixrft inspect-entropy` as one call: the problems of cfg.data.train, the policy, the report,
    and entropy.json / entropy.html written into `output_dir` (atomically). `progress(n)` counts problems."""
    from pathlib import Path

    from prefixrft_cli.jsonio import atomic_write_json, atomic_write_text, writable_dir
    from prefixrft_cli.models import load_policy

    problems = load_demonstrated_problems(cfg.data.train, cfg.domain, split, limit, cfg.seed)
    output_dir = writable_dir(output_dir, "--output-dir")  # before the model loads: a bad path fails fast
    policy, tokenizer = load_policy(cfg.model.name_or_path, cfg.model.dtype, cfg.model.trust_remote_code)
    report = inspect_entropy(policy, tokenizer, problems, cfg.data.prompt_template, cfg.model.name_or_path,
                             max_demo_tokens, progress=progress)
    atomic_write_json(output_dir / "entropy.json", report.to_json())
    atomic_write_text(output_dir / "entropy.html", html_page(report, show=50))
    return report


# ---------------------------------------------------------------- colours and views

def entropy_colour(entropy: float, scale: float) -> tuple[int, int, int]:
    """Green (certain) through yellow to red (uncertain); `scale` is the entropy drawn fully red."""
    x = min(max(entropy / scale, 0.0), 1.0) if scale > 0 else 0.0
    if x < 0.5:
        return int(90 + 330 * x), 200, 90                    # green -> yellow
    return 255, int(200 - 300 * (x - 0.5)), 60               # yellow -> red


def colour_scale(report: EntropyReport) -> float:
    """The entropy drawn fully red: the mean entropy of the highest-entropy slice (at least 1e-6)."""
    return max(report.slices[-1].mean_entropy, 1e-6)


def terminal_view(view: DemoView, scale: float):
    """A rich Text of one demonstration: background by entropy, underlined where top-1 differs."""
    from rich.text import Text

    text = Text()
    for token in view.tokens:
        r, g, b = entropy_colour(token.entropy, scale)
        style = f"black on rgb({r},{g},{b})" + ("" if token.top1_is_demo else " underline")
        text.append(token.text, style=style)
    return text


def html_page(report: EntropyReport, show: int) -> str:
    """A standalone HTML page: both tables and the first `show` demonstrations coloured by entropy."""
    scale = colour_scale(report)
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(s.name)}</td><td>{s.tokens}</td><td>{s.mean_entropy:.4f}</td>"
                   f"<td>{s.mean_top1_prob:.4f}</td><td>{100 * s.top1_is_demo_share:.1f}%</td></tr>"
                   for s in report.slices)
    kept = "".join(f"<tr><td>{100 * r.ratio:.0f}%</td><td>{r.tokens}</td><td>{100 * r.signal_share:.1f}%</td></tr>"
                   for r in report.retained)
    views = []
    for view in report.demonstrations[:show]:
        spans = []
        for t in view.tokens:
            r, g, b = entropy_colour(t.entropy, scale)
            tip = (f"entropy {t.entropy:.3f} | top-1 {t.top1_text!r} p={t.top1_prob:.3f} | "
                   f"p(demo)={t.demo_prob:.3f}")
            cls = "" if t.top1_is_demo else ' class="miss"'
            spans.append(f'<span{cls} style="background:rgb({r},{g},{b})" title="{esc(tip)}">'
                         f"{esc(t.text).replace(chr(10), '&#8629;<br>')}</span>")
        views.append(f"<h3>{esc(view.problem_id)} (demonstration {view.demonstration})</h3>"
                     f"<pre class=demo>{''.join(spans)}</pre>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>prefixrft inspect-entropy: {esc(report.model)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}} td:first-child{{text-align:left}}
pre.demo{{white-space:pre-wrap;font-size:14px;line-height:1.7}} span.miss{{text-decoration:underline}}</style>
</head><body>
<h1>Entropy of demonstration tokens under {esc(report.model)}</h1>
<p>{report.token_count} tokens of {len(report.demonstrations)} demonstrations, template {esc(report.template)}.
Colour: green = low entropy, red = entropy &ge; {scale:.3f} nats; underlined = the policy's top-1 token is not
the demonstration's. Hover a token for its numbers.</p>
<table><tr><th>Prefix-token slice</th><th>Tokens</th><th>Mean entropy</th><th>Mean top-1 prob.</th>
<th>Top-1 = demo token</th></tr>{rows}</table>
<table><tr><th>Retained ratio</th><th>Tokens</th><th>Normalized prefix-side contribution</th></tr>{kept}</table>
{''.join(views)}
</body></html>
"""
