"""Exact fast sampling on CPU: HF's tokens and RNG state, bit for bit, at a fraction of the cost.

HF's sampling step spends its time where nothing is decided:

* ``TopPLogitsWarper`` sorts the whole vocabulary `(B, V)`, although after ``TopKLogitsWarper`` only ``k``
  candidates are finite.
* ``torch.multinomial`` checks the distribution with three reductions and two host syncs, then draws one
  exponential per vocabulary entry, each a scalar ``log1p`` (see `lightning_gen.decoding._draws`).
* On a small vocabulary, Python and dispatch: `LogitsProcessorList` inspects every processor's signature at
  every step.

This module produces the same tokens and generator state by shorter routes, and hands each step back to HF's own
code wherever it cannot guarantee that. A `Sampler` looks at the processor chain once per `generate` call:

* **plain**: any processor this module does not know (a user's own class, a subclass, a list other than
  `LogitsProcessorList`), or the fast path switched off: HF's list and ``torch.multinomial``.
* **direct** (fewer than 8192 scores, or off the CPU): HF's processors called one by one, top-k in fewer steps,
  then multinomial's own draw without its checks (`lightning_gen.decoding._draws`), on the CPU with the exponentials of
  all steps drawn ahead. Off the CPU the steps are *sync-free*: nothing is read back to the host; a NaN or an
  invalid distribution is raised by `Sampler.finish` after the last step.
* **fast** (large vocabularies on the CPU): without top-k, top-p, min-p and typical-p without their full sort of
  values and indices (`lightning_gen.decoding._nucleus`), and where one of them is the chain's last, the draw decided
  on the few tokens it keeps (`lightning_gen.decoding._candidates.after_nucleus`: no masked copy, no softmax and no
  whole-row search of the `(B, V)` row, only its uniforms); with top-k, one ``topk(k + 1)`` gives the
  candidates; HF keeps every value >= the k-th, so the step falls back when the (k+1)-th value ties the k-th
  (or on NaN / +inf). HF's top-p sorts the
  masked vector ascending: exactly ``[-inf] * (V - k) + ascending(candidates)``. We build that tensor directly,
  with the same shape and dtype, so the same softmax and cumsum kernels see the same bytes and return the same
  cumulative probabilities. Only the order of *tied* values can differ from ``torch.sort``'s, which matters only
  when tied values fall on both sides of the cut: the step then falls back. The draw is `draws.candidate_draw`:
  logarithms only at the candidates. Before any of that, `lightning_gen.decoding._candidates` tries to decide
  top-p, min-p and the draw on the candidates alone (no full-width pass after ``topk``), and hands the step to
  the full-width route where a decision is within its rounding bound.

The processors before top-k (penalties, bans, temperature, ...) and the mask-only warpers after top-p always run
as HF's own objects.

Set the environment variable ``LIGHTNING_GEN_FAST_PATH=0`` (read at import) or ``_fastpath.ENABLED = False`` to use
the plain path everywhere; ``_fastpath.stats`` counts which route each step took.

Example::

    >>> from transformers.generation import logits_process as lp
    >>> chain = lp.LogitsProcessorList([lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(5),
    ...                                 lp.TopPLogitsWarper(0.9)])
    >>> scores = torch.randn(2, 5000, generator=torch.Generator().manual_seed(0))
    >>> ids = torch.zeros(2, 1, dtype=torch.long)
    >>> fast = Sampler(chain).sample(ids, scores, generator=torch.Generator().manual_seed(1))
    >>> probs = torch.softmax(chain(ids, scores), dim=-1)
    >>> plain = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(1)).squeeze(1)
    >>> torch.equal(fast, plain)
    True
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, fields
from typing import Any

import torch
from transformers.generation import logits_process as lp

from lightning_gen.decoding import _candidates as candidates_
from lightning_gen.decoding import _chain as chain_
from lightning_gen.decoding import _draws as draws
from lightning_gen.decoding import _nucleus as nucleus_

__all__ = ["ENABLED", "FastPathStats", "Sampler", "plain_sample", "stats"]

#: Use the fast path; ``LIGHTNING_GEN_FAST_PATH=0`` turns it off for the whole process.
ENABLED: bool = os.environ.get("LIGHTNING_GEN_FAST_PATH", "1").strip().lower() not in ("0", "false", "no", "off")

# HF processors called unchanged before top-k: pure functions of (input_ids, scores) with a 2-argument __call__.
_AS_IS = frozenset({
    lp.SequenceBiasLogitsProcessor, lp.EncoderRepetitionPenaltyLogitsProcessor, lp.RepetitionPenaltyLogitsProcessor,
    lp.NoRepeatNGramLogitsProcessor, lp.EncoderNoRepeatNGramLogitsProcessor, lp.NoBadWordsLogitsProcessor,
    lp.MinLengthLogitsProcessor, lp.MinNewTokensLengthLogitsProcessor, lp.ForcedBOSTokenLogitsProcessor,
    lp.ForcedEOSTokenLogitsProcessor, lp.InfNanRemoveLogitsProcessor, lp.ExponentialDecayLengthPenalty,
    lp.SuppressTokensLogitsProcessor, lp.SuppressTokensAtBeginLogitsProcessor, lp.TemperatureLogitsWarper,
    lp.TopHLogitsWarper, lp.TopKLogitsWarper, lp.TopPLogitsWarper, lp.MinPLogitsWarper, lp.TypicalLogitsWarper,
    lp.EpsilonLogitsWarper, lp.EtaLogitsWarper, lp.LogitNormalization,
})
# Warpers that may follow top-k and keep the draw on its candidates: they only set entries to -inf
# (`LogitNormalization` maps -inf to -inf), so every token they leave finite is a top-k candidate.
_MASK_ONLY = frozenset({
    lp.TopPLogitsWarper, lp.MinPLogitsWarper, lp.TypicalLogitsWarper, lp.EpsilonLogitsWarper, lp.EtaLogitsWarper,
    lp.LogitNormalization,
})
# Processors whose first operation returns a new tensor on every route of this module (temperature divides;
# top-k ends in `where`, `scatter_` on a new tensor or `masked_fill`; top-p, min-p and typical-p, HF's and
# `_nucleus`'s, only read the scores and end in `masked_fill`).
_NEW_TENSOR_FIRST = frozenset({lp.TemperatureLogitsWarper, lp.TopKLogitsWarper, lp.TopPLogitsWarper,
                               lp.MinPLogitsWarper, lp.TypicalLogitsWarper})
_NEG_INF = float("-inf")
# Below this many scores (batch x vocabulary) the shortcut's fixed cost (~50 small ops) exceeds what it saves.
_MIN_NUMEL = 8192


@dataclass
class FastPathStats:
    """How many sampling steps took each route (process-wide, for tests and benchmarks).

    Attributes:
        fast: Steps decided by the fast path (possibly with a few exponentials replayed).
        direct: Steps off the CPU, or too small for the shortcut to pay: HF's processors called one by one (as
            `LogitsProcessorList` calls them, without its per-call signature inspection), then multinomial's draw.
        plain: Steps sent whole to HF's processor list and ``torch.multinomial``: fast path off, or a processor it
            does not know.
        on_candidates: Fast steps whose draw was decided on top-k's candidates, or on the tokens a last top-p,
            min-p or typical-p warper keeps, alone (`lightning_gen.decoding._candidates`).
        top_k_fallback: Steps whose top-k/top-p ran as HF's own warpers (a tie at a cut, NaN or inf, top_k >= V).
        nucleus_fallback: Top-p, min-p or typical-p warpers (without top-k) that ran as HF's own on the fast route
            (see `lightning_gen.decoding._nucleus`).
        draw_fallback: Steps whose draw was ``torch.multinomial`` itself (invalid distribution, zero uniform, ...).
        replays: Exponentials recomputed by torch's own kernel because of float32 rounding.
    """

    fast: int = 0
    direct: int = 0
    plain: int = 0
    on_candidates: int = 0
    top_k_fallback: int = 0
    nucleus_fallback: int = 0
    draw_fallback: int = 0
    replays: int = 0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)


stats = FastPathStats()


@dataclass(frozen=True)
class _Plan:
    """A processor chain split around its top-k: ``prefix`` → ``top_k`` (→ ``top_p``) → ``suffix``; without top-k,
    ``prefix`` → ``nucleus``, a last top-p, min-p or typical-p warper whose draw can be decided on what it keeps."""

    chain: tuple[Any, ...]
    prefix: tuple[Any, ...]
    top_k: lp.TopKLogitsWarper | None
    top_p: lp.TopPLogitsWarper | None
    suffix: tuple[Any, ...]
    nucleus: Any = None


def _plan(processors: Any) -> _Plan | None:
    """Split a chain the fast path covers, or None when any member is not a transformers class it knows."""
    # `LogitsProcessorList` itself (a subclass may call its members differently), of known members only.
    if type(processors) is not lp.LogitsProcessorList or any(type(p) not in _AS_IS for p in processors):
        return None
    chain = tuple(processors)
    for i in range(len(chain) - 1, -1, -1):
        proc = chain[i]
        if type(proc) is lp.TopKLogitsWarper:
            tail = chain[i + 1:]
            usable = proc.filter_value == _NEG_INF and all(
                type(p) in _MASK_ONLY and getattr(p, "filter_value", _NEG_INF) == _NEG_INF for p in tail
            )
            if not usable:
                break
            top_p = tail[0] if tail and type(tail[0]) is lp.TopPLogitsWarper else None
            return _Plan(chain, chain[:i], proc, top_p, tail[1:] if top_p is not None else tail)
        if type(proc) not in _MASK_ONLY:
            break
    last = chain[-1] if chain else None
    if type(last) in nucleus_.CUTS and last.filter_value == _NEG_INF:
        return _Plan(chain, chain[:-1], None, None, (), last)
    return _Plan(chain, chain, None, None, ())


def plain_sample(processors: Any, input_ids: torch.Tensor, scores: torch.Tensor,
                 generator: torch.Generator | None) -> torch.Tensor:
    """HF's sampling step verbatim: the processor chain, softmax, one multinomial draw per row. `(B,)`"""
    probs = torch.softmax(processors(input_ids, scores), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


class Sampler:
    """One processor chain, inspected once, then applied at every step of a `generate` call.

    The route (plain, direct or fast, see above) is chosen at the first step; every later step must have scores of
    the same shape and device and use the same generator, as the steps of one `generate` call do.

    Args:
        processors: The logits processor chain (a `LogitsProcessorList`).
        steps: How many steps will sample. With more than one, the direct route draws their exponentials ahead,
            and `close` must be called when sampling ends.
        sync_free: Never wait for the device at a step: the checks that need the host (a NaN in greedy scores, an
            invalid distribution for the draw) are gathered and raised by `finish`, after the last step. None (the
            default) chooses it off the CPU, where a host sync stalls the device queue.
        rewindable: How many of the last steps `rewind` may take back (a loop that learns late that it had
            stopped); sampling then keeps the generator state from before each of them.
        owns_scores: The caller passes, wherever `needs_copy` is true, a copy of the logits that nothing else
            reads (`scores_of`'s): the repetition penalty, the n-gram ban and the temperature then write into it
            (`lightning_gen.decoding._chain`).

    Example::

        >>> chain = lp.LogitsProcessorList([lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(3)])
        >>> scores, ids = torch.tensor([[0.0, 1.0, 2.0, 3.0]]), torch.zeros(1, 1, dtype=torch.long)
        >>> Sampler(chain).process(ids, scores)
        tensor([[  -inf, 1.2500, 2.5000, 3.7500]])
        >>> sampler, generator = Sampler(chain, steps=5), torch.Generator().manual_seed(0)
        >>> [int(sampler.sample(ids, scores, generator=generator)[0]) for _ in range(5)]
        [2, 3, 3, 3, 3]
        >>> sampler.finish()
        >>> sampler.close()
    """

    def __init__(self, processors: Any, *, steps: int = 1, sync_free: bool | None = None,
                 rewindable: int = 0, owns_scores: bool = False) -> None:
        self.processors = processors
        self.plan = _plan(processors) if ENABLED else None
        chain = self.plan.chain if self.plan is not None else None
        #: Whether the chain may write into the scores it is given, so that they must be a copy of the model's logits
        #: (HF always copies). A chain that starts by making a new tensor, or makes none, cannot.
        self.needs_copy = chain is None or (len(chain) > 0 and type(chain[0]) not in _NEW_TENSOR_FIRST)
        # Whether the chain may write into the scores of a step: the caller's copy, made when `needs_copy` says so.
        self._owned = owns_scores and self.needs_copy
        self.steps = steps
        self._route: Any = None  # the bound method chosen at the first step
        self._kth_rank = 0  # the direct route's top-k threshold: the (V - k + 1)-th smallest score
        self._stream: draws.ExponentialStream | None = None
        self.sync_free = sync_free
        self._invalid: list[torch.Tensor] = []  # sync-free steps: 0-dim booleans, "this step could not choose"
        self._generator: torch.Generator | None = None
        # Generator states from before each of the last `rewindable` draws (none kept while a stream draws ahead).
        self._states: deque[torch.Tensor] | None = deque(maxlen=rewindable) if rewindable > 0 else None
        self._scratch = draws.Scratch()  # the steps' (B, V) copies and uniforms, one allocation each

    def scores_of(self, logits: torch.Tensor) -> torch.Tensor:
        """A step's scores `(B, V)` float32: the logits themselves where the chain cannot write into them (see
        `needs_copy`), else HF's copy of them, made on the CPU into storage that every step reuses when each
        processor is a transformers class this module knows (none of them keeps the scores it is given)."""
        if not self.needs_copy and logits.dtype == torch.float32:
            return logits
        if self.plan is None or not logits.is_cpu:
            return logits.to(dtype=torch.float32, copy=True)
        return self._scratch.get("scores", tuple(logits.shape), torch.float32).copy_(logits)

    def process(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``processors(input_ids, scores)``, without `LogitsProcessorList`'s per-call signature inspection when
        every processor is a transformers class known to take ``(input_ids, scores)``. `(B, V)`"""
        plan = self.plan
        if plan is None:
            return self.processors(input_ids, scores)
        return chain_.run(plan.chain, input_ids, scores, owned=self._owned)

    def sample(self, input_ids: torch.Tensor, scores: torch.Tensor, *,
               generator: torch.Generator | None) -> torch.Tensor:
        """The token `plain_sample` would draw for each row, and the same generator state afterwards. `(B,)`

        Args:
            input_ids: The sequences so far, `(B, T)`.
            scores: Next-token scores, `(B, V)`.
            generator: The random generator, or None for torch's default one.
        """
        route = self._route
        if route is None:
            route = self._route = self._choose_route(scores, generator)
            self._generator = generator if generator is not None else _default_generator(scores.device)
        if self._states is not None and self._stream is None:
            self._states.append(self._generator.get_state())
        return route(input_ids, scores, generator)

    def greedy(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """HF's greedy choice, the argmax of the processed scores, refusing NaN scores (whose index argmax would
        return: a token the model never chose). `(B,)`"""
        scores = self.process(input_ids, scores)
        if scores.dim() == 2:
            tokens, invalid = chain_.argmax(scores)  # torch's own argmax wherever numpy's is not known to agree
        else:
            tokens, invalid = torch.argmax(scores, dim=-1), scores.isnan().any()
        if self._sync_free(scores):
            self._invalid.append(invalid)
        elif bool(invalid):
            raise _nan_logits_error()
        return tokens

    def finish(self) -> None:
        """Raise what a sync-free step could not: once every step has run, one host sync for all of them.

        Raises:
            FloatingPointError: Greedy decoding met NaN scores.
            RuntimeError: Sampling met an invalid distribution (torch.multinomial's own error).
        """
        invalid, self._invalid = self._invalid, []
        if invalid and bool(torch.stack(invalid).any()):
            sampled = self._route is not None  # `sample` chose a route; `greedy` needs none
            raise draws.invalid_distribution_error() if sampled else _nan_logits_error()

    def rewind(self, steps: int) -> None:
        """Take back the last ``steps`` steps (at most ``rewindable``): the generator is left as before them and
        their deferred checks are dropped, as if the loop had stopped earlier."""
        if steps <= 0:
            return
        if self._invalid:  # sync-free steps leave one check each
            del self._invalid[len(self._invalid) - steps:]
        if self._stream is not None:
            self._stream.rewind(steps)
        elif self._route is not None:  # `sample` ran: restore the state from before the first step taken back
            assert self._states is not None and steps <= len(self._states), "rewind beyond `rewindable`"
            self._generator.set_state(self._states[-steps])

    def close(self) -> None:
        """Rewind a generator drawn ahead to where step-by-step draws would have left it."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _sync_free(self, scores: torch.Tensor) -> bool:
        if self.sync_free is None:
            self.sync_free = not scores.is_cpu
        return self.sync_free

    def _choose_route(self, scores: torch.Tensor, generator: torch.Generator | None) -> Any:
        plan = self.plan
        if plan is None or scores.dim() != 2:
            return self._plain
        on_cpu = scores.is_cpu and (generator is None or generator.device.type == "cpu")
        if on_cpu and scores.numel() >= _MIN_NUMEL:
            return self._fast
        if plan.top_k is not None:
            vocab = scores.shape[-1]
            self._kth_rank = vocab - min(plan.top_k.top_k, vocab) + 1
        if not draws.emulated(scores.device.type):
            return self._direct
        # Drawing ahead needs a generator nothing else draws from meanwhile: not torch's default one, which the
        # model itself may use.
        if on_cpu and self.steps > 1 and generator is not None and generator is not torch.default_generator:
            self._stream = draws.ExponentialStream(generator, steps=self.steps)
        return self._direct_sync_free if self._sync_free(scores) else self._direct_cpu

    def _plain(self, input_ids: torch.Tensor, scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        stats.plain += 1
        return plain_sample(self.processors, input_ids, scores, generator)

    def _fast(self, input_ids: torch.Tensor, scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        stats.fast += 1
        plan = self.plan
        scores = chain_.run(plan.prefix, input_ids, scores, owned=self._owned, sort_free=True, stats=stats)
        candidates = None
        if plan.top_k is not None:
            if candidates_.covers(plan.top_p, plan.suffix):
                tokens = candidates_.sample(plan.top_k, plan.top_p, plan.suffix, scores, generator, stats,
                                            self._scratch)
                if tokens is not None:
                    stats.on_candidates += 1
                    return tokens
            scores, candidates = candidates_.top_k_top_p(plan.top_k, plan.top_p, input_ids, scores, stats)
        elif plan.nucleus is not None:
            tokens, scores = candidates_.after_nucleus(plan.nucleus, input_ids, scores, generator, stats,
                                                       self._scratch)
            if tokens is not None:
                stats.on_candidates += 1
                return tokens
        scores = chain_.run(plan.suffix, input_ids, scores, owned=True, sort_free=True, stats=stats,
                            candidates=candidates)
        probs = torch.softmax(scores, dim=-1)  # (B, V), HF's probabilities
        return draws.candidate_draw(probs, candidates, generator, stats, self._scratch)

    def _direct_probs(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        stats.direct += 1
        plan = self.plan
        scores = chain_.run(plan.prefix if plan.top_k is not None else plan.chain, input_ids, scores, owned=self._owned)
        if plan.top_k is not None:
            # HF's top-k arithmetic in fewer steps: every score below the k-th largest (NaN counting as the largest,
            # as in topk) to -inf.
            kth = scores.kthvalue(self._kth_rank, dim=-1, keepdim=True).values  # (B, 1)
            scores = torch.where(scores < kth, _NEG_INF, scores)
            if plan.top_p is not None:
                scores = plan.top_p(input_ids, scores)
        return torch.softmax(chain_.run(plan.suffix, input_ids, scores, owned=True), dim=-1)

    def _direct_cpu(self, input_ids: torch.Tensor, scores: torch.Tensor,
                    generator: torch.Generator | None) -> torch.Tensor:
        return draws.multinomial(self._direct_probs(input_ids, scores), generator, self._stream)

    def _direct_sync_free(self, input_ids: torch.Tensor, scores: torch.Tensor,
                          generator: torch.Generator | None) -> torch.Tensor:
        probs = self._direct_probs(input_ids, scores)
        self._invalid.append(probs.sum().isnan())  # a softmax row is a distribution unless it is NaN
        return draws.argmax_draw(probs, generator, self._stream)

    def _direct(self, input_ids: torch.Tensor, scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        probs = self._direct_probs(input_ids, scores)
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def _default_generator(device: torch.device) -> torch.Generator:
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


def _nan_logits_error() -> FloatingPointError:
    return FloatingPointError("the model's logits contain NaN; greedy decoding cannot choose a token")
