"""Loss curves from a run's metrics.jsonl (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from .metrics_log import read_records

__all__ = ["read_metrics", "plot_run", "plot_runs"]

# the logged terms in panel order; the cross-entropy on gold labels is "mlm" (masked-lm) or "ce" (classification)
TERMS = ("loss", "kl", "mlm", "ce", "cos")


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass the output_dir of a distilx train run")
    return read_records(path)  # a torn last line is dropped with a warning


def plot_runs(runs: dict[str, str | Path], out_file: str | Path, title: str = "distilx loss curves") -> Path:
    """One panel per loss term, one line per run ({label: run_dir}); returns the PNG path."""
    import matplotlib
    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    records_of = {label: read_metrics(run_dir) for label, run_dir in runs.items()}
    terms = [t for t in TERMS if any(records and t in records[0] for records in records_of.values())] or ["loss"]
    fig, axes = plt.subplots(1, len(terms), figsize=(4 * len(terms), 3.2))
    for label, records in records_of.items():
        steps = [r["step"] for r in records]
        for ax, term in zip(axes, terms):
            if records and term in records[0]:
                ax.plot(steps, [r[term] for r in records], label=label)
    for ax, term in zip(axes, terms):
        ax.set_title(term)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out_file = Path(out_file)
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


def plot_run(run_dir: str | Path) -> Path:
    """Draw run_dir/loss_curves.png from run_dir/metrics.jsonl."""
    run_dir = Path(run_dir)
    return plot_runs({run_dir.name: run_dir}, run_dir / "loss_curves.png", title=f"distilx: {run_dir.name}")
