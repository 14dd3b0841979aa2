"""The full parameters of an FSDP2 (`fully_shard`) model for one round, gathered once instead of at every forward.

Inside `full_parameters` every FSDP2 module is unsharded (one all-gather per parameter group, in the same
order on every process) and told not to reshard after its forward, so a decode step makes no collective at
all; on exit each module is resharded and its own reshard-after-forward setting put back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn

__all__ = ["can_gather", "extra_bytes", "fits_gathered", "full_parameters"]


def _fsdp2_modules(root: nn.Module) -> list[nn.Module]:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch without FSDP2
        return []
    return [m for m in root.modules() if isinstance(m, FSDPModule)]


def _restorable(module: nn.Module) -> bool:
    """Whether this torch release keeps the reshard-after-forward setting where `full_parameters` restores it."""
    try:
        groups = module._get_fsdp_state()._fsdp_param_groups
    except AttributeError:
        return False
    return all(hasattr(group, "post_forward_mesh_info") for group in groups) and hasattr(
        module, "set_reshard_after_forward")


def can_gather(strategy: Any, root: nn.Module) -> bool:
    """Whether this process's parameters are FSDP2 shards that `full_parameters` can gather: `fully_shard`
    under `ModelParallelStrategy` with a tensor-parallel size of 1 (tensor-parallel shards stay sharded), on a
    torch release whose FSDP2 settings it can put back."""
    modules = _fsdp2_modules(root)
    if not isinstance(strategy, ModelParallelStrategy) or not modules or not all(map(_restorable, modules)):
        return False
    mesh = strategy.device_mesh
    return "tensor_parallel" not in (mesh.mesh_dim_names or ()) or mesh["tensor_parallel"].size() == 1


def extra_bytes(root: nn.Module) -> int:
    """Bytes the gathered parameters take beyond this process's own shards (a DTensor's numel is its global one)."""
    extra = 0
    for param in root.parameters():
        local = param.to_local() if hasattr(param, "to_local") else param
        extra += (param.numel() - local.numel()) * param.element_size()
    return extra


def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def fits_gathered(root: nn.Module, device: torch.device) -> bool:
    """The gathered parameters fit when what they add is at most half of the device's free memory now (CUDA:
    `torch.cuda.mem_get_info`; CPU: ``MemAvailable``), leaving the other half to the round's activations and
    KV caches. Judged once at the start of fit, on each process; the caller reduces it across processes."""
    return extra_bytes(root) <= _free_bytes(device) // 2


def _outermost(modules: list[nn.Module]) -> list[nn.Module]:
    inner = {id(child) for m in modules for child in m.modules() if child is not m}
    return [m for m in modules if id(m) not in inner]


@contextmanager
def full_parameters(root: nn.Module, *, outermost_only: bool = False) -> Iterator[None]:
    """Unshard every FSDP2 module under ``root`` for the duration of the block (a collective: every process
    must enter), keeping them unsharded across forwards; reshard and restore their settings on exit.

    With ``outermost_only`` (lockstep decoding) only the outermost FSDP2 modules are unsharded, those FSDP2
    keeps unsharded between forwards anyway; the inner ones still gather at each forward. Their parameters
    then stay the same tensors for the whole round, whatever restores a module's state after a call.
    """
    modules = [m for m in _fsdp2_modules(root) if _restorable(m)]
    if outermost_only:
        modules = _outermost(modules)
    saved = []
    for module in modules:
        state = module._get_fsdp_state()
        groups = list(state._fsdp_param_groups)
        saved.append((state, getattr(state, "_auto_reshard_after_forward", None),
                      [(g, g.post_forward_mesh_info) for g in groups]))
        module.set_reshard_after_forward(False, recurse=False)
    try:
        for module in modules:
            module.unshard()
        yield
    finally:
        for module in modules:
            module.reshard()
        for state, auto, groups in saved:
            if auto is not None:
                state._auto_reshard_after_forward = auto
            for group, mesh_info in groups:
                group.post_forward_mesh_info = mesh_info
