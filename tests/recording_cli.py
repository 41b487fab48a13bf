"""`distilx train` (argv as for `python -m distilx.cli`) with the stream's own record of every batch the loop
takes: one JSON line {"epoch", "origin"} per batch in $DISTILX_TEST_RECORD/rank{RANK}.jsonl (`origin` is
the stream's `last_origin`: row starts of a masked-LM batch, example indices of a classification batch).
The tests' instrumentation (test_cluster.py), not a run output; a resumed process appends to the file."""

import json
import os
import sys
from pathlib import Path

import numpy as np

import distilx.training as training
from distilx.cli import main

_endless = training._endless


def _recorded(stream):
    path = Path(os.environ["DISTILX_TEST_RECORD"]) / f"rank{os.environ.get('RANK', '0')}.jsonl"
    with open(path, "a", buffering=1) as record:  # one whole line per batch
        for batch in _endless(stream):
            origin = np.asarray(stream.last_origin).reshape(-1).tolist()
            record.write(json.dumps({"epoch": stream.epoch, "origin": origin}) + "\n")
            yield batch


training._endless = _recorded
sys.exit(main(sys.argv[1:]))
