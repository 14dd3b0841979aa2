"""Shared helpers of the benchmark scripts: the machine line, timers and medians."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


def machine() -> str:
    """One line naming the machine: platform, CPU count, load, torch version and threads."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.platform()} | {platform.processor() or platform.machine()} | cpus={os.cpu_count()} "
            f"| load1={load:.2f} | python {platform.python_version()} | torch {torch.__version__} "
            f"| threads={torch.get_num_threads()}")


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall-clock and process CPU seconds ``fn`` took, and what it returned.

    On a shared machine the CPU time is the steadier figure: it leaves out the time spent waiting for a core.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass
class Runs:
    """Wall and CPU seconds and the outputs of one benchmarked function, round by round."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    outputs: list[object] = field(default_factory=list)

    def summary(self, scale: float = 1e3, unit: str = "ms") -> str:
        return (f"median wall {median(self.wall) * scale:8.1f} {unit}, cpu {median(self.cpu) * scale:8.1f} {unit}"
                f"   (wall runs {[round(t * scale, 1) for t in self.wall]})")


def alternate(runs: dict[str, Callable[[int], object]], repeats: int, warmup: int = 1) -> dict[str, Runs]:
    """Run each named function ``warmup`` times, then ``repeats`` rounds alternating them (the order flips every
    round so that none always runs first). Each call gets the round index (negative during warm-up)."""
    for i in range(warmup):
        for fn in runs.values():
            fn(-1 - i)
    results = {name: Runs() for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            wall, cpu, out = timed(lambda: runs[name](r))
            results[name].wall.append(wall)
            results[name].cpu.append(cpu)
            results[name].outputs.append(out)
    return results


def ratios(num: Runs, den: Runs) -> str:
    """``num / den`` as ratio of median wall times, of median CPU times, and median of paired wall ratios."""
    paired = median([a / b for a, b in zip(num.wall, den.wall)])
    return (f"{median(num.wall) / median(den.wall):.3f} (wall medians), {median(num.cpu) / median(den.cpu):.3f} "
            f"(cpu medians), {paired:.3f} (paired wall)")
