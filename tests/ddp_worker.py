"""Run by test_distributed.py under torchrun: one rank of a 2-process gloo distillation run.

Arguments: TEACHER TRAIN_FILE OUT_DIR REPORT_DIR [TASK] (TASK: masked-lm, the default, or
sequence-classification). Writes REPORT_DIR/rank{R}.json (the test's own channel, not a run output): a
digest of the student's parameters after training, and the original token sequences of the first batches
this rank read.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch

from distilx import TrainConfig, train
from distilx.data import Tokenizer
from distilx.distributed import setup_distributed
from distilx.models.classification import load_classifier
from distilx.tasks import task_for
from distilx.tasks.masked_lm import masked_lm_stream

teacher, train_file, out_dir, report_dir = sys.argv[1:5]
task = sys.argv[5] if len(sys.argv) > 5 else "masked-lm"
masked_lm = task == "masked-lm"
config = TrainConfig(task=task, teacher=teacher, train_files=[train_file], output_dir=out_dir, student_layers=2,
                     seq_len=48, batch_size=4, grad_accum=2, max_steps=3, log_every=1, save_every=2, eval_batches=0,
                     progress=False, tensorboard=False, seed=3, device="cpu", **({"kl_on": "targets"} if masked_lm else {}))
result = train(config)
env = setup_distributed("cpu")
digest = hashlib.sha256()
for p in result.student.parameters():
    digest.update(p.detach().contiguous().numpy().tobytes())
# what this rank reads: original ids (masks undone) of the first 6 batches of its shard
if masked_lm:
    stream = masked_lm_stream(config, Tokenizer(teacher), env)
else:
    stream = task_for(task).make_stream(config, None, env, load_classifier(teacher))
sequences = []
for _, batch in zip(range(6), stream):
    original = torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"]) if masked_lm else \
        batch["input_ids"]
    for row, mask in zip(original, batch["attention_mask"]):
        sequences.append(row[mask.bool()].tolist())
Path(report_dir, f"rank{env.rank}.json").write_text(json.dumps(
    {"rank": env.rank, "world_size": env.world_size, "params": digest.hexdigest(), "steps": result.steps,
     "sequences": sequences}))
