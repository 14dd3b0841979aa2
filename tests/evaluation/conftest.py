"""Fixtures for the evaluation tests: trained BPE tokenizers (one that adds BOS, one that does not), and lm-eval's
logging kept quiet."""

from __future__ import annotations

import logging

import pytest
from tiny import train_bpe
from transformers import PreTrainedTokenizerFast


@pytest.fixture(scope="session")
def bpe() -> PreTrainedTokenizerFast:
    """Byte-level BPE, 400 tokens, no BOS (GPT-2's habit): EOS is lm-eval's prefix token."""
    return train_bpe(adds_bos=False)


@pytest.fixture(scope="session")
def bpe_bos() -> PreTrainedTokenizerFast:
    """Byte-level BPE, 400 tokens, that starts every encoding with ``<s>``."""
    return train_bpe(adds_bos=True)


@pytest.fixture(autouse=True)
def _quiet_lm_eval():
    """lm-eval logs a warning for every request it truncates; the tests truncate on purpose."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
