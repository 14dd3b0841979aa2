"""The numbers a task reports, from the log-likelihoods of its examples: pure Python, one function per metric.

``acc`` and ``acc_norm`` are lm-evaluation-harness's: the choice with the highest log-likelihood, and the highest
log-likelihood per character of the choice (its text without the delimiter); ties go to the first choice, as
``numpy.argmax``. ``centered`` is the accuracy rescaled so that guessing scores 0 and a perfect model 1, and
``core`` the mean of the tasks' centred accuracies (DCLM's and nanochat's CORE score). ``bits_per_byte`` is the
negative log-likelihood in bits divided by the text's UTF-8 bytes, which compares models whatever their tokenizer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["best", "bits_per_byte", "centered", "core", "mean"]


def best(values: Sequence[float]) -> int:
    """The index of the largest value, the first one on a tie (``numpy.argmax``).

    Example::

        >>> best([-3.0, -1.5, -1.5])
        1
    """
    if not values:
        raise ValueError("`values` must hold at least one value to choose from, got none")
    return max(range(len(values)), key=values.__getitem__)


def mean(values: Sequence[float]) -> float:
    """The mean, NaN when there is nothing to average.

    Example::

        >>> mean([1.0, 0.0, 1.0, 1.0]), mean([])
        (0.75, nan)
    """
    return math.fsum(values) / len(values) if values else math.nan


def centered(accuracy: float, random_baseline: float) -> float:
    """``(accuracy - b) / (1 - b)``: 0 at chance (``b``), 1 when every answer is right, negative below chance.

    Raises:
        ValueError: ``random_baseline`` is not in [0, 1).

    Example::

        >>> centered(0.625, 0.25)
        0.5
    """
    if not 0.0 <= random_baseline < 1.0:
        raise ValueError(f"`random_baseline` must be in [0, 1), got {random_baseline!r}")
    return (accuracy - random_baseline) / (1.0 - random_baseline)


def core(centered_accuracies: Sequence[float]) -> float:
    """The CORE score: the mean of the tasks' centred accuracies (NaN without any).

    Example::

        >>> core([0.5, 0.1, -0.1])
        0.16666666666666666
    """
    return mean(centered_accuracies)


def bits_per_byte(loglikelihood: float, num_bytes: int) -> float:
    """Bits per UTF-8 byte of a text whose tokens have summed log-likelihood ``loglikelihood`` (nats):
    ``-loglikelihood / (num_bytes * ln 2)``, lm-eval's ``bits_per_byte``.

    Raises:
        ValueError: ``num_bytes`` is not positive.

    Example::

        >>> round(bits_per_byte(-math.log(2) * 30, 10), 6)   # 30 bits over 10 bytes
        3.0
    """
    if num_bytes <= 0:
        raise ValueError(f"`num_bytes` must be positive, got {num_bytes!r}")
    return -loglikelihood / (num_bytes * math.log(2))
