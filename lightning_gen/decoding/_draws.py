"""``torch.multinomial(probs, 1)``'s draw, reproduced bit for bit at a lower cost.

For one sample, torch's multinomial checks the distribution (three reductions and two host syncs) and returns
``argmax(probs / q)`` for ``q = empty_like(probs).exponential_(1)``. On the CPU each ``q`` is
``float32(-log1p(-u))`` of one float64 uniform ``u`` per element, drawn in memory order and computed by scalar
libm (~25 ns apiece). Three cheaper routes follow from that, each with the same tokens and the same generator
state afterwards:

* `multinomial`: for a softmax output, which is a valid distribution unless it holds a NaN, one sum stands in
  for the three checks, then the draw is computed as multinomial computes it.
* `ExponentialStream`: successive draws on `(B, V)` consume the generator one after the other, so the
  exponentials of many decoding steps can be drawn at once, with ``uniform_`` and a vectorised ``log1p``.
* `candidate_draw`: when only ``k`` candidates can win (after top-k), the logarithms are computed only there.

Vectorised and scalar ``log1p`` agree within 2 ulp of float64; a value whose float32 rounding could still
depend on that (within `WINDOW` relative of a float32 rounding boundary) is recomputed by torch's own
``exponential_``. `emulated` checks every premise against this torch once per process; when one fails, every
route calls ``torch.multinomial`` itself.

Example::

    >>> probs = torch.softmax(torch.randn(3, 50, generator=torch.Generator().manual_seed(0)), dim=-1)
    >>> a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    >>> torch.equal(multinomial(probs, a), torch.multinomial(probs, 1, generator=b).squeeze(1))
    True
    >>> torch.equal(a.get_state(), b.get_state())
    True
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from lightning_gen.decoding import _chain as chain_

__all__ = ["WINDOW", "ExponentialStream", "Scratch", "any_zero", "argmax_draw", "candidate_draw", "emulated",
           "invalid_distribution_error", "multinomial", "replay", "to_uniform", "uniform_bits"]

# Relative distance from a float32 rounding boundary under which a float64 exponential is recomputed exactly;
# 2**-48 is at least 16 ulp of float64, far above the 2 ulp that two faithful log1p's can differ by.
WINDOW = 2.0 ** -48
# Beyond this many such values in one step, `candidate_draw` restores the generator and lets multinomial draw.
MAX_REPLAYS = 8
# An `ExponentialStream` draws at most this many values (float64) at once: 512 KiB.
BLOCK_ELEMENTS = 65536


@functools.cache
def emulated(device_type: str = "cpu") -> bool:
    """Whether this torch draws as this module assumes on ``device_type``: checked once against its own kernels.

    ``multinomial(p, 1)`` must equal ``argmax(p / exponential_)`` and leave the same generator state (any device).
    On the CPU also: ``exponential_`` on float32 must equal ``float32(-log1p(-u))`` for float64 ``uniform_`` draws,
    which must be the low 53 bits of int64 ``random_`` draws times ``2**-53`` (`uniform_bits`),
    and two draws on `(B, V)` must equal one on `(2, B, V)`, with the same generator state.
    """
    if device_type != "cpu":
        return _argmax_is_multinomial(torch.device(device_type))
    data = torch.Generator().manual_seed(20240611)
    probs = torch.rand(4, 3001, generator=data) ** 3
    probs[:, ::5] = 0
    probs = probs / probs.sum(dim=-1, keepdim=True)
    for seed in range(3):
        a, b, c, d = (torch.Generator().manual_seed(seed) for _ in range(4))
        drawn = torch.multinomial(probs, 1, generator=a).squeeze(1)
        exponential = torch.empty_like(probs).exponential_(1, generator=b)
        uniform = torch.empty(probs.shape, dtype=torch.float64).uniform_(generator=c)
        bits = uniform_bits(probs.shape, e := torch.Generator().manual_seed(seed))
        two = torch.empty((2, *probs.shape)).exponential_(1, generator=d)
        second = torch.empty_like(probs).exponential_(1, generator=b)
        if not (torch.equal(exponential, torch.log1p(uniform.neg()).neg().float())
                and torch.equal(drawn, (probs / exponential).argmax(dim=-1))
                and torch.equal(two, torch.stack([exponential, second]))
                and torch.equal(to_uniform(bits), uniform) and torch.equal(e.get_state(), c.get_state())
                and torch.equal(a.get_state(), c.get_state())
                and torch.equal(b.get_state(), d.get_state())):
            return False
    return True


def _argmax_is_multinomial(device: torch.device) -> bool:
    try:
        data = torch.Generator().manual_seed(20240611)
        probs = torch.rand(4, 3001, generator=data) ** 3
        probs[:, ::5] = 0
        probs = (probs / probs.sum(dim=-1, keepdim=True)).to(device)
        for seed in range(3):
            a, b = (torch.Generator(device=device).manual_seed(seed) for _ in range(2))
            drawn = torch.multinomial(probs, 1, generator=a).squeeze(1)
            if not (torch.equal(drawn, argmax_draw(probs, b)) and torch.equal(a.get_state(), b.get_state())):
                return False
    except Exception:  # noqa: BLE001  (a device without generators or these kernels: draw with torch.multinomial)
        return False
    return True


def multinomial(probs: torch.Tensor, generator: torch.Generator | None,
                stream: ExponentialStream | None = None) -> torch.Tensor:
    """``torch.multinomial(probs, 1, generator).squeeze(1)`` for a softmax output ``probs`` `(B, V)` on the CPU.

    Args:
        probs: A softmax output: each row a distribution, or NaN throughout (softmax of a row with NaN or +inf, or
            of an all -inf row), which makes multinomial raise.
        generator: The random generator, or None for torch's default one.
        stream: Exponentials drawn ahead from ``generator`` (float32 contiguous ``probs`` only).
    """
    if not emulated() or math.isnan(float(probs.sum())):
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)  # raises what it raises
    return argmax_draw(probs, generator, stream)


def argmax_draw(probs: torch.Tensor, generator: torch.Generator | None,
                stream: ExponentialStream | None = None) -> torch.Tensor:
    """multinomial's draw without its checks, ``argmax(probs / exponential_)`` `(B,)`, for ``probs`` known to be
    valid, or checked later (`invalid_distribution_error`). Off the CPU only where `emulated` holds there."""
    if stream is not None and probs.dtype == torch.float32 and probs.is_contiguous():
        q = stream.next(probs.shape)
    else:
        q = torch.empty_like(probs).exponential_(1, generator=generator)
    return (probs / q).argmax(dim=-1)


def invalid_distribution_error() -> RuntimeError:
    """The error torch.multinomial raises for a NaN distribution, word for word."""
    try:
        torch.multinomial(torch.full((1, 1), math.nan), num_samples=1)
    except RuntimeError as error:
        return error
    return RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")


_LOW_53 = (1 << 53) - 1


class Scratch:
    """CPU storage that the steps of one `generate` call reuse for their `(B, V)` tensors.

    A tensor of a few megabytes allocated afresh at every step comes from memory that malloc has handed back to
    the system in between, so each of its 4 KiB pages faults on first touch: at batch 32 over 50257 tokens, about
    4700 faults and 10 ms a step for the uniforms' integers and the scores' copy. Kept here, they fault once.

    Example::

        >>> scratch = Scratch()
        >>> scratch.get("bits", (2, 3), torch.int64).data_ptr() == scratch.get("bits", (2, 3), torch.int64).data_ptr()
        True
    """

    def __init__(self) -> None:
        self._tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """The uninitialised tensor ``name`` of ``shape`` and ``dtype``, the same storage as at the last call that
        asked for that shape and dtype."""
        tensor = self._tensors.get(name)
        if tensor is None or tensor.shape != shape or tensor.dtype != dtype:
            tensor = self._tensors[name] = torch.empty(shape, dtype=dtype)
        return tensor


def uniform_bits(shape: tuple[int, ...], generator: torch.Generator, scratch: Scratch | None = None) -> torch.Tensor:
    """The integers ``m`` `(shape)` int64 of the uniforms ``u = m * 2**-53`` that ``uniform_`` on float64 would draw,
    the generator advanced alike: int64 ``random_`` keeps the low 63 bits of the same 64-bit draws, and float64
    ``uniform_`` the low 53 of them, scaled (`emulated` checks it). Cheaper than ``uniform_``, and half the
    conversions where only a few uniforms are read. With ``scratch``, in its storage: valid until the next call."""
    bits = torch.empty(shape, dtype=torch.int64) if scratch is None else scratch.get("bits", tuple(shape), torch.int64)
    bits.random_(generator=generator)
    np.bitwise_and(bits.numpy(), _LOW_53, out=bits.numpy())  # in place, as torch's bitwise_and_ at half its cost
    return bits


def any_zero(bits: torch.Tensor) -> bool:
    """Whether any of `uniform_bits`'s integers ``bits`` (CPU) is 0, a uniform 0 whose exponential 0 makes
    multinomial's ratio infinite or NaN: numpy's ``min``, a sixth of torch's ``amin`` on int64."""
    return bool(bits.numpy().min() == 0)


def to_uniform(bits: torch.Tensor) -> torch.Tensor:
    """The float64 uniforms of `uniform_bits` (exact: ``m < 2**53``)."""
    return bits.double().mul_(2.0 ** -53)


def _exponentials(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """``torch.empty(shape).exponential_(1, generator=generator)`` with a vectorised logarithm (same generator state)."""
    state = generator.get_state()
    uniform = torch.empty(shape, dtype=torch.float64).uniform_(generator=generator)
    exact = torch.log1p(uniform.neg_()).neg_()
    q = exact.float()
    unsure = ((exact * (1 + WINDOW)).float() != q) | ((exact * (1 - WINDOW)).float() != q)
    if bool(unsure.any()):  # about one block in 200: let torch's own kernel draw the whole block
        generator.set_state(state)
        return torch.empty(shape).exponential_(1, generator=generator)
    return q


class ExponentialStream:
    """The exponentials that successive ``exponential_(1)`` calls on float32 `(B, V)` tensors would return, drawn
    for several steps at once.

    The generator runs ahead of the steps taken; `close` rewinds it to where step-by-step draws would have left it.

    Args:
        generator: A CPU generator that nothing else draws from until `close`.
        steps: How many steps may follow; no more than that is drawn ahead.

    Example::

        >>> a, b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        >>> stream = ExponentialStream(a, steps=10)
        >>> ahead = [stream.next((2, 5)) for _ in range(3)]
        >>> stream.close()
        >>> one_by_one = [torch.empty(2, 5).exponential_(1, generator=b) for _ in range(3)]
        >>> all(map(torch.equal, ahead, one_by_one)), torch.equal(a.get_state(), b.get_state())
        (True, True)
    """

    def __init__(self, generator: torch.Generator, *, steps: int) -> None:
        self.generator = generator
        self.steps = steps
        self._block: tuple[torch.Tensor, ...] = ()  # n steps of (B, V), views made at once
        self._shape: tuple[int, ...] = ()  # (B, V)
        self._used = self._count = 0
        self._start: Any = None  # generator state before the block
        self._history: list[tuple[Any, int, tuple[int, ...]]] = []  # earlier blocks, all used: (start, count, shape)

    def next(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The next step's exponentials, float32 of ``shape`` `(B, V)`."""
        if self._used >= len(self._block) or shape != self._shape:
            self._refill(tuple(shape))
        self._used += 1
        return self._block[self._used - 1]

    def _refill(self, shape: tuple[int, ...]) -> None:
        if self._count and self._used == self._count and shape == self._shape:
            self._history.append((self._start, self._count, self._shape))
        else:  # a block left part-used (or a first one): `rewind` never reaches before it
            self._history.clear()
        self.close()
        self._count = max(1, min(self.steps, BLOCK_ELEMENTS // max(1, math.prod(shape))))
        self.steps -= self._count
        self._start = self.generator.get_state()
        self._block = _exponentials((self._count, *shape), self.generator).unbind(0)
        self._shape, self._used = shape, 0

    def rewind(self, steps: int) -> None:
        """Take back the last ``steps`` steps: `close` then leaves the generator as if they had not drawn."""
        while steps > self._used:
            assert self._history, "rewind past the first block of the stream"
            steps -= self._used
            self.steps += self._count  # that block is given back whole
            self._start, self._count, self._shape = self._history.pop()
            self._used = self._count
        self._used -= steps
        self._block = ()  # its views no longer line up with the steps taken: a later `next` draws afresh

    def close(self) -> None:
        """Leave the generator as if only the steps taken had drawn from it."""
        if self._used < self._count:
            self.steps += self._count - self._used
            self.generator.set_state(self._start)
            used = self._used * math.prod(self._shape)
            torch.empty(used, dtype=torch.float64).uniform_(generator=self.generator)  # one 64-bit draw each
        self._block, self._used, self._count = (), 0, 0


def candidate_draw(probs: torch.Tensor, candidates: torch.Tensor | None, generator: torch.Generator | None,
                   stats: Any, scratch: Scratch | None = None) -> torch.Tensor:
    """``torch.multinomial(probs, 1, generator).squeeze(1)``, with exponentials only where a token can win.

    ``candidates`` `(B, k)` holds every index whose probability may be nonzero, or None for all of them. ``stats``
    counts ``draw_fallback`` (multinomial drew) and ``replays`` (exponentials recomputed by torch's kernel);
    ``scratch`` holds the uniforms' integers.
    """
    if probs.dtype != torch.float32 or not probs.is_contiguous() or not emulated():
        stats.draw_fallback += 1
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
    gen = generator if generator is not None else torch.default_generator
    state = gen.get_state()
    bits = uniform_bits(probs.shape, gen, scratch)  # (B, V): exponential_'s uniforms, u = bits * 2**-53
    if candidates is None:
        drawn = _bounded_draw(probs, bits, state, stats)
        if drawn is not None:
            return drawn
        p, u = probs, to_uniform(bits)
        # torch.multinomial's own checks, so that an invalid distribution reaches it and raises its error.
        invalid = ~((probs.max() < math.inf) & (probs.min() >= 0)) | (probs.sum(dim=-1) == 0).any()
    else:
        p, u = probs.gather(1, candidates), to_uniform(bits.gather(1, candidates))  # (B, k)
        # Outside the candidates p == 0; a candidate row is valid iff its mass is positive and finite.
        invalid = ~(p.sum(dim=-1).isfinite() & (p.amax(dim=-1) > 0) & (p.amin(dim=-1) >= 0)).all()
    exact = torch.log1p(u.neg()).neg_()  # (B, ·) float64
    q = exact.float()
    # Where another faithful log1p could round to a different float32; only tokens with p > 0 can win.
    unsure = (p > 0) & (((exact * (1 + WINDOW)).float() != q) | ((exact * (1 - WINDOW)).float() != q))
    # u == 0 gives q == 0 and, where p == 0, a NaN that argmax would pick.
    flags = torch.stack([invalid.long(), unsure.sum()]).tolist()
    if flags[0] or any_zero(bits) or flags[1] > MAX_REPLAYS:
        gen.set_state(state)
        stats.draw_fallback += 1
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
    if flags[1]:
        stats.replays += replay(q, unsure, candidates, probs.shape[1], state)
    ratio = p / q
    if candidates is None:
        return ratio.argmax(dim=-1)
    best = ratio.amax(dim=-1, keepdim=True)
    # argmax's rule: the first (lowest) index among equal maxima.
    return torch.where(ratio == best, candidates, probs.shape[1]).amin(dim=-1)


# A token whose upper bound is below this fraction of a ratio some token reaches cannot win. The upper bounds are
# float32 (half the memory traffic of float64) and, like the float32 ratio p / q itself, off by less than 2**-22 of
# themselves: all of that stays below 2**-20, and 2**-16 leaves a margin of sixteen.
_SLACK = 1 - 2.0 ** -16


def _bounded_draw(probs: torch.Tensor, bits: torch.Tensor, state: torch.Tensor, stats: Any) -> torch.Tensor | None:
    """``argmax(probs / q)`` over whole rows `(B,)` for a softmax output ``probs`` and the uniforms ``u`` that make
    ``q = -log1p(-u)`` (``u = bits * 2**-53``, `uniform_bits`), with logarithms only at the few tokens that can still win; None where it cannot decide
    (an invalid distribution, ``u == 0``, too many values to replay): the caller's own route then draws.

    ``u <= q <= u / (1 - u)``, so ``p (1 - u) / u <= p / q <= p / u``: the token with the largest upper bound
    reaches at least its lower bound, which rules out every token whose upper bound is below it. The survivors get
    the exact float32 ``q`` and ratio, and argmax's rule.
    """
    vocab = probs.shape[1]
    # p / u scaled by 2**-53: float32(bits) is float32(u) * 2**53 exactly, so one rounding, as in p / float32(u).
    upper = probs / bits.float()  # (B, V) float32
    if chain_.argmax_agrees():
        at = torch.from_numpy(upper.numpy().argmax(axis=-1).astype(np.int64, copy=False)).unsqueeze(1)  # (B, 1)
        top = upper.gather(1, at)
    else:
        top, at = upper.max(dim=-1, keepdim=True)
    u_at = to_uniform(bits.gather(1, at))
    bound = probs.gather(1, at).double() * (1 - u_at) / u_at  # (B, 1) float64: a ratio that token reaches
    # NaN in a row (an invalid distribution) or u == 0 (q == 0, a ratio of inf or NaN) leave a top that is not finite.
    # A bound this far above float32's smallest normal keeps every upper bound that could reach it from underflowing.
    if not bool((top.isfinite() & (bound > 2.0 ** -60)).all()):
        return None
    bound = (bound * (_SLACK * 2.0 ** -53)).float()
    rows, cols = (upper >= bound).nonzero(as_tuple=True)  # row-major: (row, column) ascending
    p = probs[rows, cols]
    exact = torch.log1p(to_uniform(bits[rows, cols]).neg_()).neg_()
    q = exact.float()
    unsure = ((exact * (1 + WINDOW)).float() != q) | ((exact * (1 - WINDOW)).float() != q)
    replays = int(unsure.sum())
    if replays > MAX_REPLAYS:
        return None
    if replays:
        at = unsure.nonzero().squeeze(1)
        q[at] = _torch_exponentials((rows[at] * vocab + cols[at]).tolist(), state)
        stats.replays += replays
    ratio = p / q  # float32, as multinomial divides
    best = torch.full((probs.shape[0],), -math.inf).scatter_reduce(0, rows, ratio, "amax")
    win = ratio == best[rows]
    # argmax's rule: the first (lowest) index among equal maxima.
    return torch.full((probs.shape[0],), vocab).scatter_reduce(0, rows[win], cols[win], "amin")


def _torch_exponentials(positions: list[int], state: torch.Tensor) -> torch.Tensor:
    """torch's own ``exponential_`` (float32) at each flat position, ascending, of the stream that starts at
    ``state``."""
    replay = torch.Generator()
    replay.set_state(state)
    out, done = [], 0
    for position in positions:
        if position > done:
            torch.empty(position - done, dtype=torch.float64).uniform_(generator=replay)  # skip ahead
        out.append(torch.empty(1).exponential_(1, generator=replay))
        done = position + 1
    return torch.cat(out)


def replay(q: torch.Tensor, unsure: torch.Tensor, candidates: torch.Tensor | None, vocab: int,
            state: torch.Tensor) -> int:
    """Overwrite ``q`` where ``unsure`` with torch's own ``exponential_`` at that element's place in the stream;
    returns how many were replayed."""
    rows, cols = unsure.nonzero(as_tuple=True)
    flat = rows * vocab + (cols if candidates is None else candidates[rows, cols])
    replay = torch.Generator()
    replay.set_state(state)
    done = 0
    for position, row, col in sorted(zip(flat.tolist(), rows.tolist(), cols.tolist())):
        if position > done:
            torch.empty(position - done, dtype=torch.float64).uniform_(generator=replay)  # skip ahead
        q[row, col] = torch.empty(1).exponential_(1, generator=replay)[0]
        done = position + 1
    return len(flat)
