"""`Sampler`: HF's sampling step (processors, softmax, ``torch.multinomial``), the same tokens and generator state,
by shorter routes where they pay.

On the CPU, at 8 x 50257 scores, HF's step spends its time in places none of which decides anything a shorter
computation cannot decide identically:

* ``torch.multinomial`` turns one uniform per entry into an exponential with scalar libm (8 ms): `_draws.draw`
  takes a logarithm only where a token can still win, or only at a top-k's candidates.
* ``TopPLogitsWarper`` sorts the scores with their int64 indices (30 ms), though its cut depends only on the sorted
  *values*: `_warpers.top_p` takes them from numpy's values-only sort (8 ms).
* After a top-k, every score but its ``k`` is -inf, yet each warper after it masks and copies the whole rows again
  (top-p, min-p: 2 ms each), and the draw looks at every entry. `_warpers.top_k` keeps the ``k`` values and indices
  of one ``topk(k + 1)`` (0.6 ms), applying a temperature before it to those alone; the top-p, min-p and
  temperature after it change only those values (`_on_candidates`), and the draw looks at those ``k`` tokens alone.
  The whole rows are built for the softmaxes (HF's, so that their sums are HF's) and for another processor.

A `Sampler` chooses its route once, at its first step, from the processors, the device and the size:

* **plain**: HF's list and ``torch.multinomial``, exactly: the shortcuts switched off, a processor that is not one
  of transformers' own classes (`_KNOWN`), fewer than `_MIN_NUMEL` scores (there multinomial costs no more than the
  shortcuts), or a torch whose kernels do not draw as `_draws.emulated` expects.
* **exact** (CPU): HF's processors, with temperature, top-k, top-p and min-p by the functions of `_warpers`, then
  `_draws.draw`.
* **sync-free** (off the CPU): HF's processors, then multinomial's draw without the checks that wait for the
  device; `finish` checks every step's rows once, after the last step.

Each shortcut returns None wherever it cannot promise HF's bytes (equal values at a cut, NaN or infinity, a
logarithm too close to a float32 rounding boundary); HF's own code then runs that step, with the generator as it
was. Set ``LIGHTNING_GEN_FAST_PATH=0`` (read at import) or ``_sampler.ENABLED = False`` to take the plain route
everywhere; ``_sampler.stats`` counts the routes and the hand-backs.

Example::

    >>> chain = lp.LogitsProcessorList([lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(50),
    ...                                 lp.TopPLogitsWarper(0.9)])
    >>> scores, ids = torch.randn(2, 5000, generator=torch.Generator().manual_seed(0)), torch.zeros(2, 1).long()
    >>> ours = Sampler(chain).sample(ids, scores, generator=torch.Generator().manual_seed(1))
    >>> torch.equal(ours, plain_sample(chain, ids, scores, torch.Generator().manual_seed(1)))
    True
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass, fields
from typing import Any

import torch
from transformers.generation import logits_process as lp

from lightning_gen.decoding import _draws as draws
from lightning_gen.decoding import _warpers as warpers

__all__ = ["ENABLED", "Sampler", "SamplerStats", "plain_sample", "stats"]

#: Take the exact and sync-free routes; ``LIGHTNING_GEN_FAST_PATH=0`` turns them off for the whole process.
ENABLED: bool = os.environ.get("LIGHTNING_GEN_FAST_PATH", "1").strip().lower() not in ("0", "false", "no", "off")

# transformers' processors that are pure functions of (input_ids, scores) with a two-argument __call__: called
# directly, without `LogitsProcessorList`'s per-call signature inspection.
_KNOWN = frozenset({
    lp.SequenceBiasLogitsProcessor, lp.EncoderRepetitionPenaltyLogitsProcessor, lp.RepetitionPenaltyLogitsProcessor,
    lp.NoRepeatNGramLogitsProcessor, lp.EncoderNoRepeatNGramLogitsProcessor, lp.NoBadWordsLogitsProcessor,
    lp.MinLengthLogitsProcessor, lp.MinNewTokensLengthLogitsProcessor, lp.ForcedBOSTokenLogitsProcessor,
    lp.ForcedEOSTokenLogitsProcessor, lp.InfNanRemoveLogitsProcessor, lp.ExponentialDecayLengthPenalty,
    lp.SuppressTokensLogitsProcessor, lp.SuppressTokensAtBeginLogitsProcessor, lp.TemperatureLogitsWarper,
    lp.TopHLogitsWarper, lp.TopKLogitsWarper, lp.TopPLogitsWarper, lp.MinPLogitsWarper, lp.TypicalLogitsWarper,
    lp.EpsilonLogitsWarper, lp.EtaLogitsWarper, lp.LogitNormalization,
})
# Processors after which every -inf score is still -inf (with a filter value of -inf): a top-k's indices before them
# still hold every token that can be drawn.
_MASKING = frozenset({lp.TopKLogitsWarper, lp.TopPLogitsWarper, lp.MinPLogitsWarper, lp.TypicalLogitsWarper,
                      lp.EpsilonLogitsWarper, lp.EtaLogitsWarper, lp.TemperatureLogitsWarper, lp.LogitNormalization})
# Below this many scores (batch x vocabulary) the exact route's fixed cost (some twenty small operations) is more
# than multinomial's logarithms cost: 8 x 1024 scores take 0.27 ms either way (top-k 50 or a temperature).
_MIN_NUMEL = 8192


@dataclass
class SamplerStats:
    """How many sampling steps took each route, and how often a shortcut handed back (process-wide, for tests and
    benchmarks).

    Attributes:
        plain: Steps sent whole to HF's processor list and ``torch.multinomial``.
        exact: CPU steps through the shortcuts.
        sync_free: Steps off the CPU that never waited for the device.
        warper_fallbacks: Top-k or top-p warpers that ran as HF's own on the exact route (equal values at the cut,
            NaN or infinity, k covering the row).
        draw_fallbacks: Exact steps whose draw was ``torch.multinomial`` itself.
    """

    plain: int = 0
    exact: int = 0
    sync_free: int = 0
    warper_fallbacks: int = 0
    draw_fallbacks: int = 0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)


stats = SamplerStats()


def plain_sample(processors: Any, input_ids: torch.Tensor, scores: torch.Tensor,
                 generator: torch.Generator | None) -> torch.Tensor:
    """HF's sampling step verbatim: the processor chain, softmax, one multinomial draw per row. `(B,)`"""
    probs = torch.softmax(processors(input_ids, scores), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


class Sampler:
    """One processor chain, applied at every step of a `generate` call by the route chosen at its first step.

    Every step must have scores of the same shape and device and use the same generator, as the steps of one
    `generate` call do.

    Args:
        processors: The logits processor chain (a `LogitsProcessorList`).
        sync_free: Never wait for the device at a step: what needs the host (a NaN in greedy scores, a row that
            is not a distribution) is gathered and raised by `finish`, after the last step. None (the default)
            chooses it off the CPU, where a host sync stalls the device's queue.
        rewindable: How many of the last steps `rewind` may take back (a loop that learns late that it had
            stopped): the generator's state is kept from before each of them.

    Example::

        >>> chain = lp.LogitsProcessorList([lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(3)])
        >>> scores, ids = torch.tensor([[0.0, 1.0, 2.0, 3.0]]), torch.zeros(1, 1, dtype=torch.long)
        >>> Sampler(chain).process(ids, scores)
        tensor([[  -inf, 1.2500, 2.5000, 3.7500]])
        >>> sampler, generator = Sampler(chain), torch.Generator().manual_seed(0)
        >>> [int(sampler.sample(ids, scores, generator=generator)[0]) for _ in range(5)]
        [2, 3, 3, 3, 3]
        >>> sampler.finish()
    """

    def __init__(self, processors: Any, *, sync_free: bool | None = None, rewindable: int = 0) -> None:
        self.processors = processors
        known = type(processors) is lp.LogitsProcessorList and all(type(p) in _KNOWN for p in processors)
        #: The chain as a tuple of transformers' own processors, or None (the plain route only).
        self.chain: tuple[Any, ...] | None = tuple(processors) if known and ENABLED else None
        self.sync_free = sync_free
        self._route: Any = None  # the bound method chosen at the first step
        self._invalid: list[torch.Tensor] = []  # sync-free steps: 0-dim booleans, "this step could not choose"
        self._generator: torch.Generator | None = None
        self._states: deque[torch.Tensor] | None = deque(maxlen=rewindable) if rewindable > 0 else None
        # The last step's processed scores and probabilities stay until the next step replaces them, as in HF's loop:
        # freed at once, malloc can hand the top of the heap back to the system, and every step then faults tens of
        # thousands of pages back in (about 12 % of a batch-32 call over GPT-2's vocabulary).
        self._held: Any = None
        self._uniforms: torch.Tensor | None = None  # the exact draw's float64 uniforms, the same storage every step

    def process(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``processors(input_ids, scores)``, the known processors called one by one. `(B, V)`"""
        if self.chain is None:
            return self.processors(input_ids, scores)
        for processor in self.chain:
            scores = processor(input_ids, scores)
        return scores

    def sample(self, input_ids: torch.Tensor, scores: torch.Tensor, *,
               generator: torch.Generator | None) -> torch.Tensor:
        """The token `plain_sample` would draw for each row, and the same generator state afterwards. `(B,)`

        Args:
            input_ids: The sequences so far, `(B, T)`.
            scores: Next-token scores, `(B, V)`, which the processors may write into (HF's copy of the logits).
            generator: The random generator, or None for torch's default one.
        """
        if self._route is None:
            self._route = self._choose_route(scores, generator)
            self._generator = generator if generator is not None else _default_generator(scores.device)
        if self._states is not None:
            self._states.append(self._generator.get_state())
        return self._route(input_ids, scores, generator)

    def greedy(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """HF's greedy choice, the argmax of the processed scores, refusing NaN scores (whose index argmax would
        return: a token the model never chose). `(B,)`"""
        scores = self.process(input_ids, scores)
        tokens = torch.argmax(scores, dim=-1)
        invalid = scores.gather(-1, tokens.unsqueeze(-1)).isnan().any()  # argmax returns a row's NaN, if any
        if self._sync_free(scores):
            self._invalid.append(invalid)
        elif bool(invalid):
            raise _nan_logits_error()
        return tokens

    def finish(self) -> None:
        """Raise what a sync-free step could not: once every step has run, one host sync for all of them.

        Raises:
            FloatingPointError: Greedy decoding met NaN scores.
            RuntimeError: Sampling met a row that is not a distribution (torch.multinomial's own error).
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
        if self._route is not None:  # `sample` ran: the state from before the first step taken back
            assert self._states is not None and steps <= len(self._states), "rewind beyond `rewindable`"
            self._generator.set_state(self._states[-steps])

    def _sync_free(self, scores: torch.Tensor) -> bool:
        if self.sync_free is None:
            self.sync_free = not scores.is_cpu
        return self.sync_free

    def _choose_route(self, scores: torch.Tensor, generator: torch.Generator | None) -> Any:
        if self.chain is None or scores.dim() != 2:
            return self._plain
        if self._sync_free(scores):
            return self._sync_free_step if draws.emulated(scores.device.type) else self._plain
        on_cpu = scores.is_cpu and (generator is None or generator.device.type == "cpu")
        return self._exact if on_cpu and scores.numel() >= _MIN_NUMEL and draws.emulated() else self._plain

    def _plain(self, input_ids: torch.Tensor, scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        stats.plain += 1
        scores = self.processors(input_ids, scores)
        probs = torch.softmax(scores, dim=-1)
        self._held = (scores, probs)
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)

    def _sync_free_step(self, input_ids: torch.Tensor, scores: torch.Tensor,
                        generator: torch.Generator | None) -> torch.Tensor:
        stats.sync_free += 1
        probs = torch.softmax(self.process(input_ids, scores), dim=-1)
        self._invalid.append(probs.sum().isnan())  # a softmax row is a distribution unless it is NaN
        return draws.argmax_draw(probs, generator)

    def _exact(self, input_ids: torch.Tensor, scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        stats.exact += 1
        vocab = scores.shape[1]
        kept = None  # after a top-k: its (values, indices) `(B, k)`, the only finite scores; `scores` is not built
        descending = False  # `kept` is as the top-k returned it (values descending), what a top-p right after reads
        candidates = None  # the indices outside which nothing can be drawn, when `scores` is built
        divisor = None  # a temperature the top-k right after it applies to the values it keeps
        for position, processor in enumerate(self.chain):
            if kept is not None:
                step = _on_candidates(processor, kept, descending, vocab)
                descending = False
                if step is not None:
                    kept = step
                    continue
                scores, candidates, kept = warpers.materialize(*kept, vocab), kept[1], None
            if type(processor) is lp.TemperatureLogitsWarper and _top_k_shortcut(self.chain, position + 1, scores):
                divisor = processor.temperature
                continue
            if _top_k_shortcut(self.chain, position, scores):
                kept = warpers.top_k(processor, scores, divisor)
                if kept is not None:
                    descending, divisor = True, None
                    continue
                stats.warper_fallbacks += 1
            if divisor is not None:  # the top-k could not decide: the temperature first, as HF applies it
                scores, divisor = self.chain[position - 1](input_ids, scores), None
            out = None
            if type(processor) is lp.TopPLogitsWarper and processor.filter_value == -math.inf \
                    and scores.dtype == torch.float32:
                out = warpers.top_p(processor, scores)
                stats.warper_fallbacks += out is None
            scores = out if out is not None else processor(input_ids, scores)
            if type(processor) not in _MASKING or getattr(processor, "filter_value", -math.inf) != -math.inf:
                candidates = None  # it may have given a score outside them a probability
        if self._uniforms is None or self._uniforms.shape != (scores.shape[0], vocab):
            self._uniforms = torch.empty((scores.shape[0], vocab), dtype=torch.float64)
        if kept is not None:  # HF's probabilities of the candidates; every other token's is 0
            self._held = None
            tokens = draws.draw(warpers.softmax_at(*kept, vocab), generator, self._uniforms, kept[1])
            if tokens is None:
                probs = torch.softmax(warpers.materialize(*kept, vocab), dim=-1)
        else:
            probs = torch.softmax(scores, dim=-1)  # (B, V), HF's probabilities
            self._held = (scores, probs)
            at = probs if candidates is None else probs.gather(1, candidates)
            tokens = draws.draw(at, generator, self._uniforms, candidates)
        if tokens is None:
            stats.draw_fallbacks += 1
            tokens = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
        return tokens


def _top_k_shortcut(chain: tuple[Any, ...], position: int, scores: torch.Tensor) -> bool:
    """Whether ``chain[position]`` is a top-k that `_warpers.top_k` may decide on ``scores``."""
    if position >= len(chain) or type(chain[position]) is not lp.TopKLogitsWarper:
        return False
    return chain[position].filter_value == -math.inf and scores.dtype == torch.float32


def _on_candidates(processor: Any, kept: tuple[torch.Tensor, torch.Tensor], descending: bool,
                   vocab: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """HF's ``processor`` on rows that are -inf outside the candidates ``kept``, as the candidates' new values; None
    where it needs the whole rows (another processor, or what its shortcut cannot decide)."""
    values, indices = kept
    kind = type(processor)
    if kind is lp.TemperatureLogitsWarper:
        return values / processor.temperature, indices
    if getattr(processor, "filter_value", None) != -math.inf:
        return None
    if kind is lp.TopPLogitsWarper and descending:
        out = warpers.top_p_kept(processor, values, vocab)
    elif kind is lp.MinPLogitsWarper and processor.min_tokens_to_keep == 1:
        out = warpers.min_p_kept(processor, values, indices, vocab)
    else:
        return None
    stats.warper_fallbacks += out is None
    return None if out is None else (out, indices)


def _default_generator(device: torch.device) -> torch.Generator:
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


def _nan_logits_error() -> FloatingPointError:
    return FloatingPointError("the model's logits contain NaN; greedy decoding cannot choose a token")
