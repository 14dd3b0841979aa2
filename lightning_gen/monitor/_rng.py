"""A fork of every global random stream a round could touch, so that training never sees the monitor's draws.

The round's own noise comes from its seeded generators; but a model may draw from the global streams in its
eval forward (MC dropout with ``F.dropout(..., training=True)``, noise layers, a sampler of its own). Inside
`forked_rng` those draws happen on copies: on exit the CPU and accelerator streams of torch, Python's `random`
and NumPy's legacy global stream are exactly as they were on entry.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["forked_rng"]


@contextmanager
def forked_rng(device: torch.device | None = None) -> Iterator[None]:
    """Run the block on copies of the global random streams: torch's CPU stream, ``device``'s stream when it is
    an accelerator (CUDA, XPU, MPS ...), Python's `random` and NumPy's ``np.random`` (when NumPy is installed).

    Example::

        >>> state = torch.get_rng_state()
        >>> with forked_rng():
        ...     _ = torch.rand(1000), random.random()
        >>> torch.equal(torch.get_rng_state(), state)
        True
    """
    accelerator = device is not None and device.type not in ("cpu", "meta")
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy comes with tensorboard
        numpy = None
    python_state = random.getstate()
    numpy_state = numpy.random.get_state() if numpy is not None else None
    devices = [device] if accelerator else []
    device_type = device.type if accelerator else "cuda"
    try:
        with torch.random.fork_rng(devices=devices, device_type=device_type):
            yield
    finally:
        random.setstate(python_state)
        if numpy is not None:
            numpy.random.set_state(numpy_state)
