"""The full parameters of a sharded model for one round, gathered once instead of at every forward.

Every function takes the strategy's ``model`` (the root the strategy wraps: the LightningModule for FSDP2, the
`FullyShardedDataParallel` root for FSDP1) and finds the kind of sharding in it:

* **FSDP2** (`fully_shard` under `ModelParallelStrategy`): every FSDP2 module is unsharded (one all-gather per
  parameter group, in the same order on every process) and told not to reshard after its forward, so a decode
  step makes no collective at all; on exit each module is resharded and its own reshard-after-forward setting
  put back.
* **FSDP1** (`FullyShardedDataParallel` under `FSDPStrategy`): `FullyShardedDataParallel.summon_full_params`
  with ``recurse=True`` (one all-gather per FSDP unit), ``writeback=False`` (sampling changes no weight),
  ``rank0_only=False`` and ``offload_to_cpu=False`` (every process decodes its own share, on its own device).
  Inside it the original modules hold the full parameters, whether the units were built with
  ``use_orig_params=True`` or not. FSDP1 forbids running a unit's forward inside that context (its forward would
  reshard the unit, and the next one gather it again), so for the block each nested unit's ``forward`` is the
  module it wraps: the round calls the original modules only.
* **DeepSpeed ZeRO stage 3** (`DeepSpeedStrategy`, ``model`` the `DeepSpeedEngine`):
  `deepspeed.zero.GatheredParameters` over the parameters that are partitioned now (persistent ones are whole
  already and stay as they are), with ``modifier_rank=None``: sampling changes no weight, so nothing is
  broadcast on exit and every process's copy is simply partitioned again. Inside it ZeRO-3's own module hooks
  would still run at every forward, and at the root's they compare their parameter trace across processes (two
  broadcasts per forward whenever the trace is not settled, which a share of other lengths on another process
  would never meet); the engine's own forward hooks mark every module "in forward" (so that reading a
  partitioned parameter gathers it) and a forward that raises would leave that mark. So for the block both are
  removed, and set up again afterwards as DeepSpeed sets them up (``DeepSpeedZeRoOffload``'s and the engine's
  own methods; ZeRO-3's parameter trace is then recorded afresh at the next steps).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy
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


def _fsdp1_units(root: nn.Module) -> list[nn.Module]:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch without FSDP1
        return []
    return FullyShardedDataParallel.fsdp_modules(root)


def _zero3_hooks(root: nn.Module) -> Any:
    """The `DeepSpeedZeRoOffload` that holds ZeRO-3's module hooks of a `DeepSpeedEngine`, None elsewhere."""
    offload = getattr(getattr(root, "optimizer", None), "parameter_offload", None)
    needed = ("forward_hooks", "backward_hooks", "_remove_module_hooks", "setup_zero_stage3_hooks")
    engine = ("module_forward_pre_hook", "module_forward_post_hook", "_create_module_forward_pre_hook",
              "_create_module_forward_post_hook")
    if offload is None or not all(hasattr(offload, name) for name in needed):
        return None
    if not all(getattr(root, name, None) is not None for name in engine):
        return None
    return offload


def _zero3_partitioned(root: nn.Module) -> list[nn.Parameter]:
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    return [p for p in root.parameters() if getattr(p, "ds_status", None) == ZeroParamStatus.NOT_AVAILABLE]


def can_gather(strategy: Any, root: nn.Module) -> bool:
    """Whether this process's parameters are shards that `full_parameters` can gather.

    FSDP1: `FullyShardedDataParallel` units under `FSDPStrategy`. FSDP2: `fully_shard` under
    `ModelParallelStrategy` with a tensor-parallel size of 1 (tensor-parallel shards stay sharded), on a torch
    release whose FSDP2 settings it can put back. DeepSpeed: ZeRO stage 3, on a DeepSpeed release whose ZeRO-3
    hooks it can remove and set up again.
    """
    if isinstance(strategy, FSDPStrategy):
        return bool(_fsdp1_units(root))
    if isinstance(strategy, DeepSpeedStrategy):
        return bool(getattr(strategy, "zero_stage_3", False)) and _zero3_hooks(root) is not None
    modules = _fsdp2_modules(root)
    if not isinstance(strategy, ModelParallelStrategy) or not modules or not all(map(_restorable, modules)):
        return False
    mesh = strategy.device_mesh
    return "tensor_parallel" not in (mesh.mesh_dim_names or ()) or mesh["tensor_parallel"].size() == 1


def extra_bytes(root: nn.Module) -> int:
    """Bytes the gathered parameters take beyond this process's own shards: for FSDP2 a DTensor's global size less
    its local one; for FSDP1 each unit's whole unsharded flat parameter (the buffer its all-gather fills, beside
    the shard, which stays); for DeepSpeed ZeRO-3 each partitioned parameter's whole size (``ds_numel``)."""
    extra = 0
    if _zero3_hooks(root) is not None:
        extra += sum(p.ds_numel * p.element_size() for p in _zero3_partitioned(root))
    for unit in _fsdp1_units(root):
        flat = unit._flat_param  # None for a unit without parameters of its own
        if flat is not None and flat._unpadded_unsharded_size.numel() > flat.numel():  # sharded (not NO_SHARD)
            extra += flat._unpadded_unsharded_size.numel() * flat.element_size()
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
def _fsdp1_full_parameters(root: nn.Module) -> Iterator[None]:
    from torch.distributed.fsdp import FullyShardedDataParallel

    nested = [unit for unit in _fsdp1_units(root) if unit is not root]
    with FullyShardedDataParallel.summon_full_params(root, recurse=True, writeback=False, rank0_only=False,
                                                     offload_to_cpu=False):
        for unit in nested:
            unit.forward = unit.module.__call__  # an instance attribute: the class's forward is back on `del`
        try:
            yield
        finally:
            for unit in nested:
                del unit.forward


@contextmanager
def _zero3_full_parameters(root: nn.Module) -> Iterator[None]:
    import deepspeed
    from deepspeed.runtime.zero import parameter_offload

    hooks = _zero3_hooks(root)
    with deepspeed.zero.GatheredParameters(_zero3_partitioned(root), modifier_rank=None):
        hooks._remove_module_hooks()
        root.module_forward_pre_hook.remove()  # the engine's prologue / epilogue, as DeepSpeed itself removes them
        root.module_forward_post_hook.remove()
        try:
            yield
        finally:
            root.module_forward_pre_hook = root._create_module_forward_pre_hook()
            root.module_forward_post_hook = root._create_module_forward_post_hook()
            hooks.forward_hooks, hooks.backward_hooks = [], []  # the removed handles; set up anew below
            stack = getattr(parameter_offload, "FWD_MODULE_STACK", [])  # a module global of DeepSpeed's
            depth = len(stack)
            hooks.setup_zero_stage3_hooks()
            del stack[depth:]  # the setup pushes the root module again, which its first setup did: once per run


@contextmanager
def _fsdp2_full_parameters(root: nn.Module, *, outermost_only: bool) -> Iterator[None]:
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


@contextmanager
def full_parameters(root: nn.Module, *, outermost_only: bool = False) -> Iterator[None]:
    """Gather the full parameters of every FSDP1 unit, FSDP2 module or ZeRO-3 parameter under ``root`` for the
    duration of the block (a collective: every process must enter), keeping them gathered across forwards; put
    back the shards and every setting on exit. A model with no such sharding is left alone.

    With ``outermost_only`` (lockstep decoding) FSDP1 units and ZeRO-3 parameters are left alone (their forwards
    gather as in training: lockstep calls the FSDP1 root, and ZeRO-3's hooks stay), and only the outermost FSDP2
    modules are unsharded, those FSDP2 keeps unsharded between forwards anyway; the inner ones still gather at
    each forward. Their parameters then stay the same tensors for the whole round, whatever restores a module's
    state after a call.
    """
    with ExitStack() as stack:
        if _fsdp1_units(root) and not outermost_only:
            stack.enter_context(_fsdp1_full_parameters(root))
        if _zero3_hooks(root) is not None and not outermost_only:
            stack.enter_context(_zero3_full_parameters(root))
        stack.enter_context(_fsdp2_full_parameters(root, outermost_only=outermost_only))
        yield
