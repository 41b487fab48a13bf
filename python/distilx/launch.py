"""`python -m distilx.launch [torchrun options] -m distilx.cli train ...`: torchrun, set up for jobs that
are preempted and requeued.

torchrun alone gets three things wrong for such a job:
- its agent handles SIGTERM, SIGINT, SIGHUP and SIGQUIT only: SIGUSR1 (SLURM's `--signal=USR1@120`)
  ends the agent by its default action and the workers never hear of it. Here the agent also forwards
  SIGUSR1 (`--signals-to-handle`), so every worker stops cleanly (distilx.preemption);
- after forwarding a signal it waits 30 s before SIGKILLing the workers, too short for the checkpoint
  of a large student; here `--shutdown-timeout` is 300 s;
- its exit status is 1 whatever stopped the workers. Here it is 75 (EXIT_PREEMPTED) when they stopped
  for a preemption (a failed worker exited with 75 and the others with 75 or the SIGTERM torchrun sends
  when one worker ends, or the agent itself received SIGTERM or SIGUSR1 and forwarded it), so a requeue
  script can test it; otherwise torchrun's own (0, or 1).
It also sets DISTILX_JOB_START once, so that `--time-limit` counts from the job's start, not from a
worker restart (`--max-restarts`). Explicit `--signals-to-handle` / `--shutdown-timeout` win.
"""

from __future__ import annotations

import os
import signal
import sys
import time

__all__ = ["main", "stopped_for_preemption", "FORWARDED_SIGNALS", "SHUTDOWN_TIMEOUT"]

FORWARDED_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
SHUTDOWN_TIMEOUT = 300
_PREEMPTING = (signal.SIGTERM, signal.SIGUSR1)  # the default preempt_signals


def _given(argv: list[str], option: str) -> bool:
    spellings = (option, option.replace("-", "_"))
    return any(a in spellings or a.startswith(tuple(s + "=" for s in spellings)) for a in argv)


def stopped_for_preemption(exit_codes) -> bool:
    """Whether the failed workers' exit codes say the job stopped for a preemption with its checkpoint.

    A worker that stopped for a preemption exits 75 as soon as the stop's checkpoint is on disk (every rank
    waits for it at a barrier); torchrun then ends the others with SIGTERM, which kills a rank that has
    already left its run (its handlers restored) before it could exit 75 itself. A SIGKILL (torchrun's
    shutdown timeout) or any other code is a failure."""
    from .preemption import EXIT_PREEMPTED

    codes = set(exit_codes)
    return EXIT_PREEMPTED in codes and codes <= {EXIT_PREEMPTED, -signal.SIGTERM}


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from .preemption import EXIT_PREEMPTED, JOB_START

    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = []
    if not _given(argv, "--signals-to-handle"):
        defaults += ["--signals-to-handle", FORWARDED_SIGNALS]
    if not _given(argv, "--shutdown-timeout"):
        defaults += ["--shutdown-timeout", str(SHUTDOWN_TIMEOUT)]
    os.environ.setdefault(JOB_START, str(time.time()))
    try:
        run(get_args_parser().parse_args(defaults + argv))
    except ChildFailedError as exc:
        codes = sorted({failure.exitcode for failure in exc.failures.values()})
        if stopped_for_preemption(codes):
            print(f"distilx.launch: the workers stopped for a preemption with a checkpoint (exit status "
                  f"{EXIT_PREEMPTED}); start the job again with --resume auto", file=sys.stderr)
            return EXIT_PREEMPTED
        print(f"distilx.launch: workers failed (exit codes {codes}):\n{exc.format_msg()}", file=sys.stderr)
        return 1
    except SignalException as exc:
        preempted = exc.sigval in _PREEMPTING
        print(f"distilx.launch: received {exc.sigval.name} and forwarded it to the workers"
              + (f" (exit status {EXIT_PREEMPTED})" if preempted else ""), file=sys.stderr)
        return EXIT_PREEMPTED if preempted else 128 + exc.sigval
    return 0


if __name__ == "__main__":
    sys.exit(main())
