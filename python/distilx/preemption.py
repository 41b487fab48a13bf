"""Preemption: a signal or a time limit ends a run at a step boundary, with a checkpoint, and a status
that tells a requeue script to start it again.

Clusters stop jobs with signals: SLURM sends SIGTERM at the time limit (SIGKILL after KillWait) and,
with `--signal=USR1@120`, a chosen signal ahead of it; Kubernetes sends SIGTERM, then SIGKILL after the
pod's grace period. distilx handles `preempt_signals` (TERM and USR1 by default):

- the handler only records the signal: a long step is never cut short, and a second signal during the
  save only records it again (the checkpoint is written atomically anyway, checkpoint.py);
- at each step boundary every process adds its "stop" flag to the step's non-finite all-reduce (one
  collective, as before), so every rank decides together even when only one was signalled;
- the run completes the step, writes a checkpoint, and `distilx train` exits with EXIT_PREEMPTED (75,
  EX_TEMPFAIL of sysexits.h: "try again later"; the CLI's own statuses are 1 and 2, a death by signal
  N is 128+N in a shell). `--resume auto` continues it.

Time limits: the run also stops when the next step (taken to last as long as the longest so far)
would end within `time_limit_margin` of the deadline: the start of the job plus `time_limit`, or the
SLURM job's end (`SLURM_JOB_END_TIME`, a Unix time SLURM exports to the job), whichever comes first.
The start of the job is `DISTILX_JOB_START` (a Unix time; `python -m distilx.launch` sets it once for
all the workers it starts and restarts), else this process's start.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import warnings

__all__ = ["EXIT_PREEMPTED", "Preemption", "parse_duration", "signal_of", "check_time_limit", "install_early", "uninstall_early"]

EXIT_PREEMPTED = 75
SLURM_END = "SLURM_JOB_END_TIME"
JOB_START = "DISTILX_JOB_START"
_PROCESS_START = time.time()  # this module is imported when the command starts (cli.py)

_received: list[int] = []  # signals the handler caught and no run has consumed yet


def _record(signum, frame) -> None:
    _received.append(signum)


def signal_of(name: str) -> signal.Signals:
    """A signal by name (TERM, SIGTERM, usr1) or number; ValueError for unknown or uncatchable ones."""
    text = str(name).strip().upper()
    try:
        sig = signal.Signals(int(text)) if text.isdigit() else signal.Signals[text if text.startswith("SIG")
                                                                                  else "SIG" + text]
    except (KeyError, ValueError):
        raise ValueError(f"preempt_signals: {name!r} is not a signal name (e.g. TERM, USR1, USR2, INT)") from None
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        raise ValueError(f"preempt_signals: {sig.name} cannot be caught; a checkpoint cannot be written on it")
    if sig in _FAULTS:
        raise ValueError(f"preempt_signals: {sig.name} reports a fault of the process itself: a handler that only notes "
                         "it returns to the faulting instruction, which faults again (the run would hang); a scheduler "
                         "stops jobs with TERM, USR1 or USR2")
    if sig in _NOT_STOPS:
        raise ValueError(f"preempt_signals: {sig.name} is sent for other reasons than stopping a job (a child process "
                         "ending, a terminal resized, a stopped process continued): it would stop runs nobody "
                         "preempted; a scheduler stops jobs with TERM, USR1 or USR2")
    return sig


def check_time_limit(time_limit, margin) -> None:
    """Raise unless both durations parse and a time limit leaves time for a step once the margin is kept
    (time_limit <= time_limit_margin would stop every start before its first step: exit 75 each time, and a
    requeue script would start it again forever)."""
    spare = parse_duration(margin, "time_limit_margin")
    if time_limit is not None and parse_duration(time_limit) <= spare:
        raise ValueError(f"time_limit={time_limit!r} is not longer than time_limit_margin={margin!r}: the run would stop "
                         "before its first step; raise --time-limit or lower --time-limit-margin")


def _slurm_end() -> float | None:
    """SLURM_JOB_END_TIME as a Unix time; a value that is not one is named in a warning, not ignored silently."""
    text = os.environ.get(SLURM_END, "").strip()
    if text.isdigit():
        return float(text)
    if text:
        warnings.warn(f"{SLURM_END}={text[:40]!r} is not a Unix time (whole seconds): the SLURM job's end is not "
                      "known, so only --time-limit and preempt_signals stop the run before it", stacklevel=3)
    return None


# synchronous faults: a handler that returns re-runs the faulting instruction
_FAULTS = {getattr(signal, n) for n in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS") if hasattr(signal, n)}
# ignored by default and sent in the ordinary course of things
_NOT_STOPS = {getattr(signal, n) for n in ("SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH") if hasattr(signal, n)}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text, field: str = "time_limit") -> float:
    """Seconds of a duration: a number of seconds, 90s / 15m / 12h / 2d, or SLURM's time formats M:S, H:M:S,
    D-H, D-H:M, D-H:M:S."""
    value = str(text).strip().lower()
    seconds = None
    if re.fullmatch(r"\d+(\.\d*)?", value):
        seconds = float(value)
    elif re.fullmatch(r"\d+(\.\d*)?[smhd]", value):
        seconds = float(value[:-1]) * _UNITS[value[-1]]
    elif m := re.fullmatch(r"(\d+)-(\d+)(?::(\d+))?(?::(\d+))?", value):  # SLURM: D-H, D-H:M, D-H:M:S
        days, hours, minutes, secs = (int(g) if g else 0 for g in m.groups())
        seconds = float(((days * 24 + hours) * 60 + minutes) * 60 + secs)
    elif m := re.fullmatch(r"(\d+):(\d+)(?::(\d+))?", value):  # SLURM: M:S, H:M:S
        a, b, c = (int(g) if g else None for g in m.groups())
        seconds = float(a * 60 + b if c is None else (a * 60 + b) * 60 + c)
    if seconds is None:
        raise ValueError(f"{field}={text!r} is not a duration: give seconds (3600), 90m, 12h, 2d or SLURM's "
                         "H:M:S / D-H:M:S")
    return seconds


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


_early: dict = {}  # signal -> the handler install_early replaced


def install_early(names) -> None:
    """Record `names` from the very start of a command (before its slow imports), until a run's
    Preemption takes over; a signal in that window then stops the run before its first step."""
    if _main_thread():
        for sig in map(signal_of, names):
            _early.setdefault(sig, signal.signal(sig, _record))


def uninstall_early() -> None:
    """Give the early-installed signals their handlers back (the command ends; no run took them over)."""
    for sig in list(_early):
        signal.signal(sig, _original(sig))
        del _early[sig]
    _received.clear()


def _original(sig):
    handler = _early[sig] if sig in _early else signal.getsignal(sig)
    return handler if handler is not None else signal.SIG_DFL


class Preemption:
    """The run's stop conditions: its signals (recorded while it is active) and its deadline.

    Use as a context manager around the run; `flags(bad)` gives the step's [non-finite, stop] flags for
    the one all-reduce; `reason` says why the run stopped."""

    def __init__(self, signals=(), deadline: float | None = None, margin: float = 0.0):
        self.signals = tuple(map(signal_of, signals))
        self.deadline = None if deadline is None else deadline - margin
        self.longest_step = 0.0
        self._previous: dict = {}

    @classmethod
    def for_run(cls, config) -> "Preemption":
        ends = []
        if config.time_limit is not None:
            start = float(os.environ.get(JOB_START) or _PROCESS_START)
            ends.append(start + parse_duration(config.time_limit))
        slurm_end = _slurm_end()
        if slurm_end is not None:
            ends.append(slurm_end)
        margin = parse_duration(config.time_limit_margin, "time_limit_margin")
        return cls(config.preempt_signals, min(ends) if ends else None, margin)

    def __enter__(self) -> "Preemption":
        if not _main_thread():
            warnings.warn("train() runs outside the main thread, where Python cannot handle signals: preempt_signals "
                          "keep their default action (a signal ends the run without a checkpoint)", stacklevel=3)
            return self
        for sig in set(_early) - set(self.signals):  # installed early, but not this run's
            signal.signal(sig, _original(sig))
        self._previous = {sig: _original(sig) for sig in self.signals}
        for sig in self.signals:
            signal.signal(sig, _record)
        _early.clear()
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        _received.clear()  # consumed by this run

    @property
    def signal(self) -> signal.Signals | None:
        """The first of this run's signals received, if any."""
        return next((signal.Signals(s) for s in _received if s in self.signals), None)

    def step_took(self, seconds: float) -> None:
        self.longest_step = max(self.longest_step, seconds)

    def due(self) -> bool:
        """Stop now? A signal arrived, or the next step would end past the deadline (minus the margin)."""
        return self.signal is not None or (self.deadline is not None
                                           and time.time() + self.longest_step >= self.deadline)

    def flags(self, bad):
        """[bad, stop] as one float tensor on bad's device (filled there: no host-to-device copy)."""
        import torch  # here: the CLI installs the handlers before anything imports torch

        bad = bad.float().reshape(())
        return torch.stack([bad, bad.new_full((), float(self.due()))])

    @property
    def reason(self) -> str:
        if self.signal is not None:
            return self.signal.name
        if self.deadline is not None and time.time() + self.longest_step >= self.deadline:
            return "the time limit"
        return "a signal to another process"
