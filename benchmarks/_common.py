"""Shared helpers of the benchmark scripts: the machine line, timers, medians and the two ways of taking turns."""

from __future__ import annotations

import itertools
import os
import platform
import resource
import statistics
import threading
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
    """Wall and CPU seconds and the outputs of one benchmarked function, round by round; where `interleave` ran
    it, also its minor page faults and its CPU seconds outside the model's forward calls."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    outputs: list[object] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    outside: list[float] = field(default_factory=list)

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


class _Baton:
    """One core for several threads: each runs while it holds the baton and hands it on to the next in turn. Each
    thread waits on a semaphore of its own, so that a hand-over wakes only the thread it is for."""

    def __init__(self, names: list[str]) -> None:
        self._alive = list(names)
        self._go = {name: threading.Semaphore(0) for name in names}
        self._go[names[0]].release()

    def wait(self, me: str) -> None:
        self._go[me].acquire()

    def hand_on(self, me: str) -> None:
        self._go[self._alive[(self._alive.index(me) + 1) % len(self._alive)]].release()
        self._go[me].acquire()

    def leave(self, me: str) -> None:
        at = self._alive.index(me)
        self._alive.remove(me)  # only the holder changes the list: no lock needed
        if self._alive:
            self._go[self._alive[at % len(self._alive)]].release()


@dataclass
class _Call:
    """What one thread's call took: the time it held the core, its CPU time, the CPU time inside the module's
    forward calls, and its minor page faults."""

    wall: float = 0.0
    cpu: float = 0.0
    in_forward: float = 0.0
    faults: int = 0
    output: object = None
    since: float = 0.0  # when it last took the core (perf_counter)
    entered: float = 0.0  # when its forward call began (thread_time)


def _side_by_side(runs: dict[str, Callable[[int], object]], module: torch.nn.Module, r: int) -> dict[str, _Call]:
    """One round of `interleave`: each function called with ``r`` in its own thread, taking turns."""
    names, threads = list(runs), torch.get_num_threads()
    baton, calls, errors = _Baton(names), {name: _Call() for name in names}, []
    thread_of: dict[int, str] = {}

    def before_forward(_module: torch.nn.Module, _args: tuple) -> None:
        me = thread_of.get(threading.get_ident())
        if me is not None:  # a forward of this module in one of the round's threads: the next one's turn
            call = calls[me]
            call.wall += time.perf_counter() - call.since
            baton.hand_on(me)
            call.since, call.entered = time.perf_counter(), time.thread_time()

    def after_forward(_module: torch.nn.Module, _args: tuple, _out: object) -> None:
        me = thread_of.get(threading.get_ident())
        if me is not None:
            calls[me].in_forward += time.thread_time() - calls[me].entered

    def body(name: str) -> None:
        torch.set_num_threads(threads)  # a thread starts with the default, not the caller's
        thread_of[threading.get_ident()] = name
        call = calls[name]
        baton.wait(name)
        try:
            faults, cpu, call.since = _faults(), time.thread_time(), time.perf_counter()
            call.output = runs[name](r)
            call.wall += time.perf_counter() - call.since
            call.cpu, call.faults = time.thread_time() - cpu, _faults() - faults
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(error)
        finally:
            baton.leave(name)

    hooks = [module.register_forward_pre_hook(before_forward), module.register_forward_hook(after_forward)]
    try:
        workers = [threading.Thread(target=body, args=(name,)) for name in names]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        for hook in hooks:
            hook.remove()
    if errors:
        raise errors[0]
    return calls


def _faults() -> int:
    """The calling thread's minor page faults so far: pages the allocator mapped afresh."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def interleave(runs: dict[str, Callable[[int], object]], module: torch.nn.Module, repeats: int,
               warmup: int = 1) -> dict[str, Runs]:
    """Like `alternate`, but the functions take turns at every forward call of ``module`` instead of call by call.

    Each function runs in its own thread, one at a time: a forward pre-hook on ``module`` hands the core on at
    every forward call, so each step of one runs between steps of the others. A call's CPU time is its thread's;
    its wall time the time it held the core. Where functions make the same forward calls, a slow spell of the
    machine (seconds long here, a forward pass varying by 15 %) then falls on all of them alike rather than on
    whichever call it hit. Rounds rotate through the orders of the functions, so that each follows each equally.
    Besides times and outputs, `Runs` gets each call's minor page faults and its CPU time outside the forward
    calls of ``module``: what the caller's own loop cost, with the model left out.
    """
    for i in range(warmup):
        _side_by_side(runs, module, -1 - i)
    results = {name: Runs() for name in runs}
    orders = list(itertools.permutations(runs))
    for r in range(repeats):
        for name, call in _side_by_side({n: runs[n] for n in orders[r % len(orders)]}, module, r).items():
            results[name].wall.append(call.wall)
            results[name].cpu.append(call.cpu)
            results[name].faults.append(call.faults)
            results[name].outside.append(call.cpu - call.in_forward)
            results[name].outputs.append(call.output)
    return results


def ratios(num: Runs, den: Runs) -> str:
    """``num / den`` as ratio of median wall times, of median CPU times, and median of paired wall ratios."""
    paired = median([a / b for a, b in zip(num.wall, den.wall)])
    return (f"{median(num.wall) / median(den.wall):.3f} (wall medians), {median(num.cpu) / median(den.cpu):.3f} "
            f"(cpu medians), {paired:.3f} (paired wall)")
