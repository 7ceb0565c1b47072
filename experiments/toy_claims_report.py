"""The tables and plots of experiments/toy_claims.py, from its run folders only.

Writes, to the output folder:
- toy_claims.md     per setting: avg@k and greedy on the easy and the hard held-out split (mean ± std
                    over seeds), each variant minus prefix-rft on the same seed, and on how many seeds
                    prefix-rft is ahead; for the hard setting, pass@k at a few k (base included);
- toy_claims.json   the same numbers per seed, with the budget and the command;
- toy_claims_reward.png   reward with prefix vs overall reward over training, prefix-rft, per setting (Fig. 4);
- toy_claims_sft_loss.png the SFT loss on the step's demonstrations over training, per variant and setting;
- toy_claims_length.png   response length and truncation over training, with (top 20%) and without
                          (all) entropy clipping, per setting (the paper's length blow-up);
- toy_claims_passk.png    pass@k on the hard held-out split, k = 1 .. passk_samples (the boundary argument).
Test: tests/test_toy_claims.py.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toy_comparison import mean_curve, mean_std, smooth

from prefixrft_cli.algo.passk import k_values, mean_pass_at_k
from prefixrft_cli.errors import UserError
from prefixrft_cli.evaluate.passk_report import BenchmarkCurve, PasskReport, PasskRun, plot_png
from prefixrft_cli.jsonio import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, read_jsonl

REFERENCE = "prefix-rft"
SPLITS = ("easy", "hard")
TABLE_K = (1, 16, 256)


@dataclass
class ClaimRun:
    setting: str
    variant: str
    seed: int
    heldout: dict                                   # heldout.json: split -> accuracy / greedy; passk_counts
    curves: dict[str, list] = field(default_factory=dict)  # metrics.jsonl key -> per step (None where absent)


CURVE_KEYS = ("reward", "reward_hybrid", "sft_loss_demos", "response_length", "truncation_rate")


def load_claim_run(run_dir: Path, setting: str, variant: str, seed: int) -> ClaimRun:
    lines = [line for _, line in read_jsonl(run_dir / "metrics.jsonl")] if (run_dir / "metrics.jsonl").is_file() else []
    return ClaimRun(setting, variant, seed, read_json(run_dir / "heldout.json"),
                    {key: [line.get(key) for line in lines] for key in CURVE_KEYS})


def collect(results: Path, budget, settings, variants) -> tuple[list[ClaimRun], list[str]]:
    runs, missing = [], []
    for seed in range(budget.seeds):
        places = [("base", "base", results / "base" / f"seed-{seed}")]
        places += [(s.name, v.name, results / s.name / v.name / f"seed-{seed}") for s in settings for v in variants]
        for setting, variant, run_dir in places:
            if (run_dir / "heldout.json").is_file():
                runs.append(load_claim_run(run_dir, setting, variant, seed))
            else:
                missing.append(f"{setting}/{variant}/seed-{seed}" if setting != "base" else f"base/seed-{seed}")
    return runs, missing


def _stat(values: list[float]) -> dict | None:
    if not values:
        return None
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "values": values}


def passk_curve(counts: list[list[int]]) -> dict[int, float]:
    pairs = [(n, c) for n, c in counts]
    return {k: mean_pass_at_k(pairs, k) for k in k_values(min(n for n, _ in pairs))}


def aggregate(runs: list[ClaimRun], budget, settings, variants, missing: list[str]) -> dict:
    """Per setting and variant: mean ± std of each split's scores, and paired differences to prefix-rft."""
    base = [r for r in runs if r.setting == "base"]
    out = {"budget": asdict(budget), "command": budget.command(), "reference": REFERENCE, "missing": missing,
           "base": _scores(base), "settings": []}
    for setting in settings:
        rows = []
        reference = {r.seed: r for r in runs if r.setting == setting.name and r.variant == REFERENCE}
        for variant in variants:
            mine = sorted((r for r in runs if r.setting == setting.name and r.variant == variant.name),
                          key=lambda r: r.seed)
            if not mine:
                continue
            row = {"name": variant.name, "note": variant.note, "seeds": [r.seed for r in mine], **_scores(mine)}
            for split in SPLITS:
                paired = [r.heldout[split]["accuracy"] - reference[r.seed].heldout[split]["accuracy"]
                          for r in mine if r.seed in reference and variant.name != REFERENCE]
                row[f"{split}_vs_reference"] = _stat(paired)
                row[f"{split}_reference_ahead"] = sum(d < 0 for d in paired)  # seeds where prefix-rft scores higher
            rows.append(row)
        out["settings"].append({"name": setting.name, "claim": setting.claim, "config": setting.config,
                                "passk": setting.passk, "variants": rows})
    return out


def _scores(runs: list[ClaimRun]) -> dict:
    row = {}
    for split in SPLITS:
        row[f"{split}_accuracy"] = _stat([r.heldout[split]["accuracy"] for r in runs])
        row[f"{split}_greedy"] = _stat([r.heldout[split]["greedy"] for r in runs])
    with_passk = [r for r in runs if "passk_counts" in r.heldout]
    if with_passk:
        curves = [passk_curve(r.heldout["passk_counts"]) for r in with_passk]
        row["passk"] = {str(k): _stat([c[k] for c in curves]) for k in curves[0]}
    return row


def _pct(stat: dict | None) -> str:
    return "—" if stat is None else f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def _signed(stat: dict | None) -> str:
    return "" if stat is None else f"{100 * stat['mean']:+.1f} ± {100 * stat['std']:.1f}"


def table_markdown(report: dict) -> str:
    b = report["budget"]
    k = b["eval_samples"]
    lines = [f"Toy math, {b['steps']} steps per run, {b['seeds']} seeds, {b['eval_problems']} held-out problems "
             f"per split, avg@{k} at temperature 1 and greedy, in %, mean ± sample std over seeds. "
             f"Differences are paired per seed against `{REFERENCE}`; 'ahead' counts the seeds where "
             f"`{REFERENCE}` scores higher.", "", f"Command: `{report['command']}`", ""]
    for setting in report["settings"]:
        lines += [f"### {setting['name']} (`--config {setting['config']}`): {setting['claim']}", "",
                  f"| variant | easy avg@{k} | easy greedy | hard avg@{k} | hard greedy | easy vs {REFERENCE} "
                  f"| ahead | hard vs {REFERENCE} | ahead |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
                  _row("base (before training)", report["base"], None)]
        lines += [_row(f"`{row['name']}`", row, row) for row in setting["variants"]]
        if setting["passk"]:
            ks = sorted({kk for kk in TABLE_K if kk <= b["passk_samples"]} | {b["passk_samples"]})
            lines += ["", f"pass@k on the hard held-out split ({b['passk_problems']} problems, "
                          f"{b['passk_samples']} samples each):", "",
                      "| variant | " + " | ".join(f"pass@{kk}" for kk in ks) + " |", "| --- |" + " --- |" * len(ks)]
            for name, row in [("base", report["base"])] + [(f"`{r['name']}`", r) for r in setting["variants"]]:
                cells = [_pct(row.get("passk", {}).get(str(kk))) for kk in ks]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if report["missing"]:
        lines += [f"Missing runs (not in the means): {', '.join(report['missing'])}", ""]
    return "\n".join(lines)


def _row(name: str, scores: dict, paired: dict | None) -> str:
    cells = [_pct(scores["easy_accuracy"]), _pct(scores["easy_greedy"]), _pct(scores["hard_accuracy"]),
             _pct(scores["hard_greedy"])]
    for split in SPLITS:
        diff = None if paired is None else paired[f"{split}_vs_reference"]
        cells += [_signed(diff), "" if diff is None else f"{paired[f'{split}_reference_ahead']}/{len(diff['values'])}"]
    return f"| {name} | " + " | ".join(cells) + " |"


def _figure(rows: int, cols: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.4 * cols, 3.3 * rows), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _curve(runs: list[ClaimRun], key: str, window: int) -> list[float]:
    return smooth(mean_curve([r.curves[key] for r in runs]), window)


def curve_plot(runs: list[ClaimRun], settings, panels: list[tuple[str, list[tuple[str, str, str]]]],
               window: int) -> bytes:
    """One column per setting, one row per panel (y label, lines of (metrics key, variant, label)); seed means."""
    shown = [s.name for s in settings]
    fig = _figure(len(panels), len(shown))
    for row, (ylabel, lines) in enumerate(panels):
        for col, setting in enumerate(shown):
            ax = fig.add_subplot(len(panels), len(shown), row * len(shown) + col + 1)
            for key, variant, label in lines:
                mine = [r for r in runs if r.setting == setting and r.variant == variant]
                if mine:
                    values = _curve(mine, key, window)
                    ax.plot(range(1, len(values) + 1), values, label=label)
            ax.set_title(setting, fontsize="medium")
            ax.set_xlabel("step")
            ax.set_ylabel(f"{ylabel} ({window}-step mean)", fontsize="small")
            ax.grid(True, alpha=0.3)
            if col == 0 and ax.lines:
                ax.legend(fontsize="small")
    return _png(fig)


def passk_png(report: dict) -> bytes:
    """pass@k (seed mean) on the hard split, one line per variant of the passk setting and the base."""
    rows = [("base", report["base"])] + [(r["name"], r) for s in report["settings"] if s["passk"] for r in s["variants"]]
    runs = []
    for name, row in rows:
        if "passk" in row:
            ks = [int(k) for k in row["passk"]]
            values = [row["passk"][str(k)]["mean"] for k in ks]
            n = report["budget"]["passk_samples"]
            runs.append(PasskRun(name, "", {"toy math, hard held-out split": BenchmarkCurve(
                report["budget"]["passk_problems"], n, n, ks, values)}))
    if not runs:
        raise UserError("no pass@k numbers to plot (the hard setting has no finished run)")
    return plot_png(PasskReport(runs))


def write_outputs(results: Path, output_dir: Path, budget, settings, variants) -> dict:
    runs, missing = collect(results, budget, settings, variants)
    if not any(r.setting != "base" for r in runs):
        raise UserError(f"{results}: no finished run (no heldout.json) to report")
    report = aggregate(runs, budget, settings, variants, missing)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "toy_claims.json", report)
    atomic_write_text(output_dir / "toy_claims.md", table_markdown(report))
    window = max(1, budget.steps // 10)
    clipping = (("prefix-rft", "top 20% (entropy clipping)"), ("prefix-rft-all", "all (no clipping)"))
    plots = {"reward": [("reward", [("reward_hybrid", REFERENCE, "reward with prefix"),
                                    ("reward", REFERENCE, "overall reward")])],
             "sft_loss": [("SFT loss on demonstrations, nats/token",
                           [("sft_loss_demos", v.name, v.name) for v in variants])],
             "length": [("response length, tokens", [("response_length", v, label) for v, label in clipping]),
                        ("truncated share", [("truncation_rate", v, label) for v, label in clipping])]}
    for name, panels in plots.items():
        atomic_write_bytes(output_dir / f"toy_claims_{name}.png", curve_plot(runs, settings, panels, window))
    if any(s.passk for s in settings):
        atomic_write_bytes(output_dir / "toy_claims_passk.png", passk_png(report))
    return report

