"""pass@k curves from eval samples of one or more runs: numbers, passk.json and passk.png.

Each input (an eval folder or a samples .jsonl) is one run. Per run and benchmark, every
problem contributes (n samples, c correct); pass@k is the mean over problems of the
unbiased estimate (algo/passk.py) for k = 1, 2, 4, ... up to the smallest n among the
benchmark's problems (and that n itself), so every problem is defined at every k.
The plot puts one panel per benchmark and one line per run, k on a log2 axis, as in the
paper's Fig. 2. Matplotlib draws with the Agg canvas (no display needed).

Leaves out: the rich tables (cli/passk.py renders them).
Test: tests/test_passk_report.py.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefixrft_cli.algo.passk import k_values, mean_pass_at_k
from prefixrft_cli.evaluate.samples import group_counts, read_samples, resolve_samples_path
from prefixrft_cli.jsonio import atomic_write_json, writable_dir


@dataclass
class BenchmarkCurve:
    """pass@k of one benchmark in one run; pass_at_k[i] belongs to k[i]."""

    problems: int
    samples_min: int          # the smallest n among the problems (the curve stops there)
    samples_max: int
    k: list[int]
    pass_at_k: list[float]


@dataclass
class PasskRun:
    label: str
    path: str
    benchmarks: dict[str, BenchmarkCurve] = field(default_factory=dict)


@dataclass
class PasskReport:
    runs: list[PasskRun]

    def benchmark_names(self) -> list[str]:
        """Every benchmark of any run, in first-seen order."""
        names: dict[str, None] = {}
        for run in self.runs:
            names.update(dict.fromkeys(run.benchmarks))
        return list(names)

    def to_json(self) -> dict:
        return {"runs": [asdict(run) for run in self.runs]}


def curve(counts: dict[str, tuple[int, int]]) -> BenchmarkCurve:
    """The pass@k curve of one benchmark from problem -> (n, c)."""
    ns = [n for n, _ in counts.values()]
    ks = k_values(min(ns))
    pairs = list(counts.values())
    return BenchmarkCurve(len(pairs), min(ns), max(ns), ks, [mean_pass_at_k(pairs, k) for k in ks])


def run_labels(paths: Sequence[Path]) -> list[str]:
    """A short label per run: the eval folder's name (or the file's stem), made unique with #2, #3."""
    labels = []
    for path in paths:
        label = path.parent.name if path.name == "samples.jsonl" else path.stem
        label = label or str(path)
        unique, number = label, 2
        while unique in labels:
            unique, number = f"{label}#{number}", number + 1
        labels.append(unique)
    return labels


def build_report(inputs: Sequence[str | Path], labels: Sequence[str] | None = None) -> PasskReport:
    """Read every run's samples and compute its curves; bad input is a UserError naming file:line."""
    from prefixrft_cli.errors import UserError

    paths = [resolve_samples_path(p) for p in inputs]
    if labels is not None and len(labels) != len(paths):
        raise UserError(f"--labels: got {len(labels)} label(s) for {len(paths)} run(s)")
    names = list(labels) if labels is not None else run_labels(paths)
    runs = []
    for label, path in zip(names, paths):
        samples = read_samples(path)
        if not samples:
            raise UserError(f"{path}: no samples in the file")
        runs.append(PasskRun(label, str(path), {b: curve(c) for b, c in group_counts(samples).items()}))
    return PasskReport(runs)


def write_outputs(report: PasskReport, output_dir: Path) -> tuple[Path, Path]:
    """passk.json and passk.png in output_dir (both written atomically); returns their paths."""
    writable_dir(output_dir, "--output-dir")
    json_path, png_path = output_dir / "passk.json", output_dir / "passk.png"
    atomic_write_json(json_path, report.to_json())
    _atomic_write_bytes(png_path, plot_png(report))
    return json_path, png_path


def plot_png(report: PasskReport) -> bytes:
    """One panel per benchmark, one line per run: pass@k (%) over k on a log2 axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = report.benchmark_names()
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), dpi=110)
    FigureCanvasAgg(fig)
    for index, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, index + 1)
        for run in report.runs:
            if name in run.benchmarks:
                c = run.benchmarks[name]
                ax.plot(c.k, [100 * v for v in c.pass_at_k], marker="o", markersize=3, label=run.label)
        ax.set_xscale("log", base=2)
        ks = sorted({k for run in report.runs if name in run.benchmarks for k in run.benchmarks[name].k})
        ax.set_xticks(ks, [str(k) for k in ks], fontsize="small")
        ax.minorticks_off()
        ax.set_title(name)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
