"""Reproducibility at run time: one seeding block, the torch thread count, the device, RNG states."""
from __future__ import annotations

import contextlib
import random
import sys
import time

import numpy as np
import torch
from tqdm import tqdm


def seed_everything(seed: int) -> None:
    """One seeding block (as cleanrl): random, numpy and torch from one integer."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got seed={seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))
    torch.manual_seed(int(seed))


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch CPU threads, then restore the previous count. Training and
    evaluation use one thread: torch's results depend on the thread count, and one thread per
    process is also what a pool of workers wants."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def rng_state() -> dict:
    """Every RNG state a resumed run needs (python, numpy, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])



def interactive() -> bool:
    """Whether stderr is a terminal (a tqdm bar redraws in place) rather than a log file or a
    notebook run by papermill (where every redraw would stay as a line)."""
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class PlainProgress:
    """A progress report for logs and executed notebooks: one line each time another tenth of
    ``total`` is done (and at the end), with the time so far and an estimate of what is left.
    The subset of tqdm's interface the package uses (update, set_postfix, close, iteration)."""

    def __init__(self, iterable=None, total=None, desc: str = "", initial: int = 0, unit: str = "it", **_):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.start, self.t0, self.shown = initial, initial, time.perf_counter(), -1

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.total:
            return
        tenth = int(10 * self.n / self.total)
        if tenth > self.shown:
            self.shown = tenth
            dt = time.perf_counter() - self.t0
            done = self.n - self.start
            left = dt / done * (self.total - self.n) if done else float("nan")
            print(f"{self.desc}: {self.n}/{self.total} {self.unit}s, {dt:.0f} s"
                  f"{f', about {left:.0f} s left' if self.n < self.total else ''}", file=sys.stderr, flush=True)

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(iterable=None, **kwargs):
    """A tqdm bar on a terminal, plain lines (:class:`PlainProgress`) otherwise."""
    return tqdm(iterable, **kwargs) if interactive() else PlainProgress(iterable, **kwargs)
