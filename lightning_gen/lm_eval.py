"""lm-evaluation-harness on any torch model: `LightningGenLM`, an ``lm_eval.api.model.LM``.

Install the extra: ``pip install 'lightning-gen[lm-eval]'``. Then any lm-eval task runs on your own network, in
the middle of training or from a checkpoint, offline when the task's data is local::

    import lm_eval
    from lm_eval.tasks import TaskManager
    from lightning_gen.lm_eval import LightningGenLM

    results = lm_eval.simple_evaluate(
        model=LightningGenLM(module.model, tokenizer=tokenizer),
        tasks=["my_task"], task_manager=TaskManager(include_path="my_tasks/"))

Its answers are those of lm-eval's ``HFLM(..., logits_cache=False)`` on a transformers model with the same
tokenizer: ``loglikelihood`` and ``loglikelihood_rolling`` through `lightning_gen.evaluation.loglikelihood`,
``generate_until`` through `lightning_gen.generate` (transformers' decoding, token for token) with lm-eval's own
stop-sequence handling. The model's modes and state and the tokenizer are left as they were.

The other way round, a task list (`~lightning_gen.evaluation.tasks.load_tasks`, the ``TaskMonitor``) takes lm-eval
task names, ``{name: hs, type: lm_eval, task: hellaswag}``: `load_lm_eval_tasks` builds them offline into
`LmEvalTask` objects, scored with the other tasks and reported with lm-eval's own metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

try:
    from lm_eval.api.model import LM
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
except ImportError as err:  # pragma: no cover - exercised where lm-eval is not installed
    raise ImportError(
        "`lightning_gen.lm_eval` needs lm-evaluation-harness: `pip install 'lightning-gen[lm-eval]'` "
        "(or `pip install lm-eval`)") from err

from lightning_gen._checks import check_int
from lightning_gen._lm_eval_tasks import LmEvalTask, load_lm_eval_tasks
from lightning_gen.decoding.adapters import AdapterName, ModelAdapter, model_device
from lightning_gen.decoding.batching import generate_completions
from lightning_gen.decoding.likelihood import loglikelihood_tokens, scoring_adapter
from lightning_gen.evaluation.encoding import RequestEncoder
from lightning_gen.evaluation.loglikelihood import rolling_totals
from lightning_gen.text.tokenization import load_tokenizer

__all__ = ["LightningGenLM", "LmEvalTask", "load_lm_eval_tasks"]


class LightningGenLM(LM):
    """An lm-eval model over any torch module and tokenizer.

    Args:
        model: Any module returning logits (see `lightning_gen.decoding.adapters` for the protocols).
        tokenizer: Anything `~lightning_gen.load_tokenizer` takes; a Hugging Face one is used as ``HFLM`` uses it.
        batch_size: Most rows per scoring forward and prompts per ``generate_until`` call; None: scoring fits
            `~lightning_gen.decoding.likelihood.BATCH_TOKENS` padded tokens, generation 32 prompts.
        adapter: How to call the model (see `~lightning_gen.generate`); detected by default.
        context_length: Most tokens the model takes; by default the adapter's or what the model advertises.
        max_gen_toks: New tokens a ``generate_until`` request may take unless it says (lm-eval's default, 256).
        seed: Seeds the generator of sampled ``generate_until`` requests (greedy ones use none).

    Example::

        >>> class Chars:
        ...     eos_token_id = 0
        ...     def encode(self, text): return [ord(c) % 64 for c in text]
        ...     def decode(self, ids): return "".join(chr(i + 32) for i in ids)
        >>> from lm_eval.api.instance import Instance
        >>> lm = LightningGenLM(nn.Embedding(64, 64), tokenizer=Chars(), context_length=32)
        >>> [(score, greedy)] = lm.loglikelihood([Instance("loglikelihood", {}, ("The cat", " sat"), 0)])
        >>> score < 0
        True
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        tokenizer: Any,
        batch_size: int | None = None,
        adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
        context_length: int | None = None,
        max_gen_toks: int = 256,
        seed: int = 1234,
    ) -> None:
        super().__init__()
        check_int("batch_size", batch_size, allow_none=True)
        check_int("max_gen_toks", max_gen_toks)
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_gen_toks = max_gen_toks
        self.seed = seed
        self._adapter, self.max_length = scoring_adapter(model, adapter, context_length=context_length)
        self._loaded = load_tokenizer(tokenizer)
        self._encoder = RequestEncoder(self._loaded)

    def _score(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        return loglikelihood_tokens(self.model, pairs, batch_size=self.batch_size, adapter=self._adapter,
                                    context_length=self.max_length)

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """``(log-likelihood, is_greedy)`` of each request's ``(context, continuation)``."""
        results = self._score([self._encoder.pair(*request.args) for request in requests])
        for request, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """The log-likelihood of each request's whole text, in windows of the context length."""
        totals = rolling_totals(self._encoder, [request.args[0] for request in requests], self.max_length, self._score)
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Each request's continuation of its context, cut at the first of its ``until`` strings (or EOS)."""
        results: list[str] = [""] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):  # one generation configuration per call, as HFLM groups them
            groups.setdefault(repr(sorted(request.args[1].items())), []).append(i)
        for members in groups.values():
            for i, text in zip(members, self._generate([requests[i].args[0] for i in members],
                                                       requests[members[0]].args[1])):
                results[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return results

    def _generate(self, contexts: list[str], gen_kwargs: dict[str, Any]) -> list[str]:
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        hf = self._loaded.hf_tokenizer
        eos = self._loaded.first_eos
        eos_text = None if eos is None else self._loaded.decode([eos])
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
        new_tokens = kwargs.pop("max_gen_toks")
        if not kwargs.get("do_sample"):
            kwargs.pop("temperature", None)  # greedy: HF would warn about an unused temperature
        room = None if self.max_length is None else self.max_length - new_tokens
        if room is not None and room < 1:
            raise ValueError(f"`max_gen_toks` must be less than the context length {self.max_length}, got {new_tokens}")
        prompts = [self._encoder.encode(context)[-room:] if room else self._encoder.encode(context)
                   for context in contexts]
        model_config = getattr(self.model, "generation_config", None)
        if getattr(model_config, "eos_token_id", None) is None and eos is not None:
            kwargs.setdefault("eos_token_id", eos)
        device = model_device(self.model, torch.device("cpu"))
        generator = torch.Generator(device=device).manual_seed(self.seed) if kwargs.get("do_sample") else None
        completions = generate_completions(self.model, prompts, batch_size=self.batch_size or 32, generator=generator,
                                           adapter=self._adapter, max_new_tokens=new_tokens, **kwargs)
        decode = (lambda ids: hf.decode(ids, skip_special_tokens=True)) if hf is not None else self._loaded.decode
        return [postprocess_generated_text(decode(ids), stop=until, think_end_token=None) for ids in completions]
