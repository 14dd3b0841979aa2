"""``torch.multinomial(probs, 1)``'s draw, bit for bit and with its generator state, at a fraction of its cost.

For one sample, torch's multinomial checks the distribution and returns ``argmax(probs / q)`` for
``q = empty_like(probs).exponential_(1)``: on the CPU each ``q`` is ``float32(-log1p(-u))`` of one float64 uniform
``u`` per entry, drawn in memory order and turned into a logarithm by scalar libm, about 20 ns apiece (8 ms a
step at 8 x 50257). `draw` takes the same uniforms from the generator (``uniform_``, 4 times cheaper) and a
logarithm only where a token can still win: since ``u <= q <= u / (1 - u)``, the token with the largest ``p / u``
reaches at least ``p (1 - u) / u``, which rules out every token whose ``p / u`` is below that. Vectorised and
libm's ``log1p`` agree within 2 ulp of float64; where the float32 rounding of a logarithm could depend on that
(within `WINDOW` of a float32 rounding boundary, about once in 10**6 draws), or anything else is unusual (an
invalid distribution, a uniform of 0), the generator is restored and multinomial draws.

`emulated` checks every premise against this torch once per process; when one fails, nothing here is used.
Off the CPU `argmax_draw` is multinomial's draw without the checks that wait for the device
(`lightning_gen.decoding._sampler` checks the rows later).

Example::

    >>> probs = torch.softmax(torch.randn(3, 5000, generator=torch.Generator().manual_seed(0)) * 4, dim=-1)
    >>> a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    >>> torch.equal(draw(probs, a), torch.multinomial(probs, 1, generator=b).squeeze(1))
    True
    >>> torch.equal(a.get_state(), b.get_state())
    True
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["WINDOW", "argmax_draw", "draw", "emulated", "invalid_distribution_error"]

#: Relative distance from a float32 rounding boundary within which a float64 logarithm is not trusted to round as
#: libm's would: 2**-48 is 16 ulp of float64, far above the 2 ulp by which two faithful log1p's can differ.
WINDOW = 2.0 ** -48
# A token whose bound p / u falls below this fraction of the ratio the leading token reaches cannot win: p / u is
# computed in float32 (two roundings) and so is multinomial's p / q; all of that stays below 2**-21, and 2**-16
# leaves a margin of thirty-two.
_SLACK = 1 - 2.0 ** -16


@functools.cache
def emulated(device_type: str = "cpu") -> bool:
    """Whether this torch draws as this module assumes on ``device_type``: checked once against its own kernels.

    Any device: ``multinomial(p, 1)`` equals ``argmax(p / exponential_)`` and leaves the same generator state. On
    the CPU also: float32 ``exponential_`` is ``float32(-log1p(-u))`` of float64 ``uniform_`` draws, one each, so
    that ``uniform_`` leaves the generator where ``exponential_`` does.
    """
    try:
        device = torch.device(device_type)
        probs = torch.rand(4, 3001, generator=torch.Generator().manual_seed(20240611)) ** 3
        probs[:, ::5] = 0
        probs = (probs / probs.sum(dim=-1, keepdim=True)).to(device)
        for seed in range(3):
            a, b, c, d = (torch.Generator(device=device).manual_seed(seed) for _ in range(4))
            drawn = torch.multinomial(probs, 1, generator=a).squeeze(1)
            if not (torch.equal(drawn, argmax_draw(probs, b)) and torch.equal(a.get_state(), b.get_state())):
                return False
            if device.type == "cpu":
                exponential = torch.empty_like(probs).exponential_(1, generator=c)
                uniform = torch.empty(probs.shape, dtype=torch.float64).uniform_(generator=d)
                if not (torch.equal(exponential, torch.log1p(uniform.neg()).neg().float())
                        and torch.equal(c.get_state(), d.get_state())):
                    return False
    except Exception:  # noqa: BLE001  (a device without generators or these kernels: multinomial draws there)
        return False
    return True


def argmax_draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """multinomial's draw without its checks, ``argmax(probs / exponential_)`` `(B,)`: for ``probs`` known to be a
    distribution, or checked later (`invalid_distribution_error`); nothing waits for the device."""
    return (probs / torch.empty_like(probs).exponential_(1, generator=generator)).argmax(dim=-1)


def invalid_distribution_error() -> RuntimeError:
    """The error torch.multinomial raises for a NaN distribution, word for word."""
    try:
        torch.multinomial(torch.full((1, 1), math.nan), num_samples=1)
    except RuntimeError as error:
        return error
    return RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")


def draw(probs: torch.Tensor, generator: torch.Generator | None, out: torch.Tensor | None = None,
         candidates: torch.Tensor | None = None) -> torch.Tensor | None:
    """``torch.multinomial(probs, 1, generator=generator).squeeze(1)`` `(B,)` for a softmax output ``probs``
    `(B, V)` float32 on the CPU, with the generator left where multinomial leaves it; None, with the generator
    untouched, where it cannot promise that (multinomial then draws, or raises its error).

    Args:
        probs: The probabilities, each row a distribution or NaN throughout (softmax's outputs); with
            ``candidates``, those tokens' probabilities `(B, k)` (every other token's is 0).
        generator: The random generator, or None for torch's default one.
        out: float64 storage `(B, V)` for the uniforms, which a caller can reuse from step to step; required with
            ``candidates`` (its shape gives ``V``).
        candidates: `(B, k)` indices outside which every probability is 0 (a top-k's), when known: the tokens
            that can win are then those, found without a pass over the whole rows.
    """
    if not emulated() or probs.dtype != torch.float32 or probs.dim() != 2:
        return None
    gen = generator if generator is not None else torch.default_generator
    state = gen.get_state()
    if candidates is not None and out is None:
        raise ValueError("draw: `out`, float64 storage of the whole rows' shape (B, V), is required with `candidates`")
    if candidates is None and (out is None or out.shape != probs.shape):
        out = torch.empty(probs.shape, dtype=torch.float64)
    tokens = _tokens(probs, out.uniform_(generator=gen), candidates)  # exponential_'s uniforms, in its order
    if tokens is None:
        gen.set_state(state)
    return tokens


def _tokens(probs: torch.Tensor, u: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor | None:
    """multinomial's tokens `(B,)` for the uniforms ``u`` `(B, V)`, or None (see `draw`)."""
    if candidates is None:
        found = _could_win(probs, u)
        return None if found is None else _winner(probs[found], u, *found)
    if not bool(u.numpy().min() > 0):  # u == 0 outside the candidates: multinomial's 0 / 0 is a NaN that argmax picks
        return None
    rows = torch.arange(candidates.shape[0]).repeat_interleave(candidates.shape[1])
    return _winner(probs.reshape(-1), u, rows, candidates.reshape(-1))


def _could_win(probs: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The tokens `(rows, columns)` whose ratio ``p / q`` may be a row's largest; None where that cannot be bounded
    (a row that is NaN, not a distribution, or a uniform of 0)."""
    upper = u.float()
    upper = torch.div(probs, upper, out=upper)  # (B, V) float32: p / u >= p / q, in place
    top, at = upper.max(dim=-1, keepdim=True)  # NaN or inf where a row is NaN or u == 0
    u_at = u.gather(1, at)
    reached = probs.gather(1, at).double() * (1 - u_at) / u_at  # (B, 1): a ratio the leading token reaches
    # Far above float32's smallest normal, so that no bound that could reach it has underflowed.
    if not bool((top.isfinite() & (reached > 2.0 ** -60)).all()):
        return None
    return (upper >= (reached * _SLACK).float()).nonzero(as_tuple=True)  # row-major: ascending per row


def _winner(p: torch.Tensor, u: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor | None:
    """``argmax(probs / q)`` `(B,)` for ``q = float32(-log1p(-u))``, as multinomial computes it (the first index among
    equal ratios), over the tokens ``(rows, cols)`` that can win, whose probabilities are ``p``; None where a logarithm
    could round differently in libm or a probability is NaN."""
    exact = torch.log1p(u[rows, cols].neg()).neg_()  # float64
    q = exact.float()
    if bool(((exact * (1 + WINDOW)).float() != q).any() | ((exact * (1 - WINDOW)).float() != q).any()):
        return None  # a logarithm libm might round to another float32
    ratio = p / q  # float32, as multinomial divides
    if not bool(ratio.isfinite().all()):
        return None
    batch, vocab = u.shape
    best = torch.full((batch,), -math.inf).scatter_reduce(0, rows, ratio, "amax")
    win = ratio == best[rows]
    return torch.full((batch,), vocab).scatter_reduce(0, rows[win], cols[win], "amin")
