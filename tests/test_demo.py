"""`distilx demo` end to end at a tiny budget: its closing message names the metrics and plot files it wrote."""

import json
import re

from distilx import demo


def test_demo_names_the_metrics_and_plot_files_it_wrote(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILX_CACHE", str(tmp_path / "cache"))  # the fitted teacher goes there, not in ~/.cache
    for key, value in dict(seq_len=32, batch_size=8, eval_batches=1).items():  # a few seconds, not minutes
        monkeypatch.setitem(demo.DEMO_DEFAULTS, key, value)
    lines = []
    out = tmp_path / "student"
    metrics = demo.run_demo(out, steps=2, head_steps=2, log=lines.append)
    closing = lines[-1]
    assert closing.startswith("Also written there:")
    named = re.findall(r"([\w.]+)/? \(", closing)
    for name in ("demo_metrics.json", "metrics.json", "metrics.jsonl", "loss_curves.png", "train_config.json"):
        assert name in named, name
    for name in named:
        assert (out / name).exists(), name
    assert json.loads((out / "demo_metrics.json").read_text())["distill_steps"] == metrics["distill_steps"] == 2
    assert any("2 steps" in line for line in lines) and not any("1 steps" in line for line in lines)
