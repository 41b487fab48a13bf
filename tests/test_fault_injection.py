"""The fault-injection script, reduced: a run SIGKILLed twice at random moments and resumed ends
bit-identical to an uninterrupted one (the full version: python tests/fault_injection.py --kills 10)."""

import pytest

from fault_injection import run


@pytest.mark.slow
def test_random_sigkills_and_resumes_end_bit_identical(tmp_path):
    """Not an item that failed on main (its atomic checkpoints already survived SIGKILL): this keeps
    the whole path - lock, ownership, checksums, whole metrics lines - exact under real kills."""
    lines = []
    assert run(kills=2, seed=3, steps=12, workdir=tmp_path, log=lines.append), "\n".join(lines)
    assert sum(": killed " in line for line in lines) == 2
    assert "final weights bit-identical to the uninterrupted run: True" in lines
