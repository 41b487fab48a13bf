"""bench/gpu_checks.sh's results: one bundle, one summary table, and unpacking for the commit.

The device tool brings back at most 8 files from $OUT, so gpu_checks.sh lets every step write its JSON into a
run folder and bundles them after each step into $OUT/gpu_results.json ({file name: content}).

    python bench/gpu_summary.py bundle RUN_DIR OUT/gpu_results.json [--steps steps.tsv]
    python bench/gpu_summary.py table OUT/gpu_results.json        # the table gpu_checks.sh prints last
    python bench/gpu_summary.py unpack OUT/gpu_results.json docs/gpu/   # the JSON files to commit
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def bundle(run_dir: Path, out: Path, steps: Path | None = None) -> dict:
    data = {}
    for path in sorted(run_dir.glob("*.json")):
        try:
            data[path.name] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:  # a step killed while writing: say so, keep the rest
            data[path.name] = {"unreadable": str(exc)}
    if steps is not None and steps.is_file():
        rows = [line.split("\t") for line in steps.read_text().splitlines() if line.strip()]
        data["steps"] = [dict(zip(("step", "status", "seconds"), r)) for r in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(out)
    return data


def _pct(x):
    return f"{100 * x:.1f}%"


def headlines(data: dict) -> dict[str, list[str]]:
    """Per step, the numbers the issue asks for, in a line or a few."""
    out: dict[str, list[str]] = {}
    tune = data.get("tune_loss_kernels.json") or {}
    lines = []
    for entry in tune.get("entries", []):
        default = entry.get("default_seconds")
        lines.append(f"V={entry['vocab']}: best {_config_name(entry['config'])} {entry['seconds'] * 1e3:.2f} ms = "
                     f"{_pct(entry['copy_fraction'])} of copy" + (f", {default / entry['seconds']:.2f}x rowwise"
                                                                  if default else ""))
    if tune.get("copy_bytes_per_s"):
        lines.insert(0, f"copy {tune['copy_bytes_per_s'] / 1e9:.0f} GB/s on {tune.get('device')}")
    out["tune"] = lines
    loss = data.get("bench_loss.json") or []
    by = {(r["n"], r["vocab"], r["provider"]): r for r in loss if isinstance(r, dict)}
    lines = []
    for (n, vocab, prov), r in sorted(by.items()):
        if prov != "distilx":
            continue
        parts = [f"N={n} V={vocab}: {r['seconds'] * 1e3:.2f} ms, {_pct(r['bound_bytes_per_s'] / r['copy_bytes_per_s'])} "
                 f"of copy ({r.get('kernel', '?')}, {r.get('kernel_source', '?')})"]
        for other in ("eager", "liger"):
            o = by.get((n, vocab, other))
            if o:
                parts.append(f"{o['seconds'] / r['seconds']:.2f}x {other} speed, {o['extra_bytes'] / max(r['extra_bytes'], 1):.1f}x "
                             f"less memory")
        lines.append("; ".join(parts))
    out["bench_loss"] = lines
    fused = data.get("bench_fused_linear.json") or []
    rows = {(r["side"], r["n"], r.get("labelled", 0.15)): r for r in fused if isinstance(r, dict)}
    lines = []
    for (side, n, labelled), r in sorted(rows.items()):
        base, other = {"fused-linear": ("fused-linear", "logits"),
                       "fused-linear@liger": ("fused-linear@liger", "liger-jsd")}.get(side, (None, None))
        o = rows.get((other, n, labelled)) if base else None
        if o:
            lines.append(f"{base} vs {other} N={n} labelled {labelled:.0%}: {o['seconds'] / r['seconds']:.2f}x speed, "
                         f"extra memory {r['extra_bytes'] / max(o['extra_bytes'], 1):.2f}x")
    out["bench_fused_linear"] = lines
    train = data.get("gpu_train.json") or []
    ok = {(r["model"], r["seq_len"], r["side"]): r for r in train if isinstance(r, dict) and "tokens_per_s" in r}
    lines = []
    for (model, seq, side), r in sorted(ok.items()):
        if side != "distilx":
            continue
        parts = [f"{model}@{seq}: distilx {r['tokens_per_s']:,.0f} tok/s (batch {r.get('batch_size')}, "
                 f"wait {_pct(r.get('data_wait_share') or 0)})"]
        for other in ("trainer-eager-kd", "research-loop"):
            o = ok.get((model, seq, other))
            if o:
                parts.append(f"{r['tokens_per_s'] / o['tokens_per_s']:.2f}x {other} (batch {o.get('batch_size')})")
        lines.append("; ".join(parts))
    failed = [f"{r['model']}@{r['seq_len']} {r['side']}: {r.get('error') or r.get('skipped')}" for r in train
              if isinstance(r, dict) and ("error" in r or "skipped" in r)]
    out["gpu_train"] = lines + failed
    smoke = data.get("gpu_train_smoke.json") or {}
    if smoke:
        out["smoke"] = ["PASS" if smoke.get("problems") == [] else f"FAIL: {smoke.get('problems')}"]
    return out


def _config_name(config: dict) -> str:
    from_parts = {"rowwise": "rowwise-b{block_v}-w{num_warps}",
                  "stream": "stream-b{block_v}-g{group}-w{num_warps}-s{num_stages}",
                  "split": "split-c{chunk_v}-b{block_v}-g{group}-w{num_warps}-s{num_stages}"}
    return from_parts.get(config.get("kernel"), "{kernel}").format(**config)


STEP_KEYS = {"tune_loss_kernels": "tune", "bench_loss": "bench_loss", "bench_fused_linear": "bench_fused_linear",
             "gpu_train.py": "gpu_train", "gpu_train_smoke": "smoke"}


def table(data: dict) -> str:
    found = headlines(data)
    lines = ["| step | status | s | result |", "|---|---|---|---|"]
    for step in data.get("steps", []):
        key = next((v for k, v in STEP_KEYS.items() if k in step["step"]), None)
        results = found.get(key, []) if key else []
        lines.append(f"| {step['step']} | {step['status']} | {step.get('seconds', '')} | {results[0] if results else ''} |")
        lines += [f"| | | | {extra} |" for extra in results[1:]]
    return "\n".join(lines)


def unpack(bundle_path: Path, dest: Path) -> list[Path]:
    data = json.loads(bundle_path.read_text())
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in data.items():
        if name.endswith(".json"):
            (dest / name).write_text(json.dumps(content, indent=1) + "\n")
            written.append(dest / name)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bundle")
    b.add_argument("run_dir", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--steps", type=Path)
    t = sub.add_parser("table")
    t.add_argument("bundle", type=Path)
    u = sub.add_parser("unpack")
    u.add_argument("bundle", type=Path)
    u.add_argument("dest", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "bundle":
        bundle(args.run_dir, args.out, args.steps)
    elif args.cmd == "table":
        print(table(json.loads(args.bundle.read_text())))
    else:
        for path in unpack(args.bundle, args.dest):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
