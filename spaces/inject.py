"""Put PEFT ops into a frozen transformers backbone, in search mode or fixed mode.

Each host module (a projection, a norm, a sub-layer, a self-attention) that carries ops gets one
:class:`Slot` child (``<host>.peft_slot``) and one forward hook. The hook adds the ops' deltas to
the host's output, in stage order (see :class:`spaces.ops.base.Op`). The backbone's module tree and
forward code stay untouched, so any T5 / BERT-like / Llama-like model works without patching.

* :func:`inject_fixed` builds the ops of an :class:`~spaces.architecture.Architecture` at their
  sizes and freezes everything else (what the retrain harness and ``apply_architecture`` use).
* :class:`Supernet` builds every module of a search space at its largest size and lets a method
  set keep weights and size distributions, fix sizes and remove modules. Removed modules are
  skipped in the forward pass (no compute, no gradient), not multiplied by zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from spaces.architecture import Architecture, Placement
from spaces.ops import OPS
from spaces.ops.base import Op
from spaces.sites import BackboneSites, SiteSpec, describe

SLOT = "peft_slot"


class Slot(nn.Module):
    """The ops attached to one host module, run by its forward hook."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = nn.ModuleDict()
        self.stash: torch.Tensor | None = None  # a sub-layer input captured by a pre-hook elsewhere
        self.reads_stash = False
        self._ordered: list[Op] = []

    def add(self, key: str, op: Op) -> None:
        self.ops[key.replace(".", "_").replace(":", "__")] = op
        self._ordered = sorted(self.ops.values(), key=lambda o: o.stage)

    def live_ops(self) -> list[Op]:
        return [op for op in self._ordered if not op.removed]


def _slot_hook(module: nn.Module, args, kwargs, output):
    slot: Slot = getattr(module, SLOT)
    ops = slot.live_ops()
    if not ops:
        return None
    is_tuple = isinstance(output, tuple)
    y = output[0] if is_tuple else output
    x = args[0] if args else kwargs["hidden_states"]
    stash = None
    if slot.reads_stash:  # the sub-layer's input, for the ops of the sub-layer site (not the projection's)
        stash, slot.stash = slot.stash, None
    out = y
    for op in ops:
        keep = op.keep
        if isinstance(keep, float) and keep == 0.0:
            continue  # gated off for this pass (a float, not a tensor: no gradient wanted): no compute
        d = op.delta((stash if op.reads_stash else x) if op.role == "parallel" else out, module)
        if not (isinstance(keep, float) and keep == 1.0):
            d = d * keep
        out = out + d.to(out.dtype)
    return (out, *output[1:]) if is_tuple else out


def _stash_hook(slot: Slot, arg_index: int):
    def hook(module, args):
        slot.stash = args[arg_index]
    return hook


def _slot_for(model: nn.Module, path: str) -> Slot:
    host = model.get_submodule(path)
    slot = getattr(host, SLOT, None)
    if slot is None:
        slot = Slot()
        host.add_module(SLOT, slot)
        host.register_forward_hook(_slot_hook, with_kwargs=True)
    return slot


def attach(model: nn.Module, spec: SiteSpec, key: str, op: Op) -> None:
    """Attach ``op`` at ``spec`` on ``model`` (the op's device follows the host's parameters)."""
    op.keep, op.removed = 1.0, False
    path = spec.attention if op.name == "prefix" else spec.module
    host = model.get_submodule(path)
    ref = next(host.parameters(), None)
    if ref is not None:
        # PEFT weights stay in fp32 under a half-precision backbone (autocast does the matmuls).
        op.to(device=ref.device, dtype=ref.dtype if ref.dtype in (torch.float32, torch.float64) else torch.float32)
    slot = _slot_for(model, path)
    op.reads_stash = op.role == "parallel" and op.name != "prefix" and spec.input_from is not None
    if op.reads_stash and not slot.reads_stash:
        slot.reads_stash = True
        model.get_submodule(spec.input_from).register_forward_pre_hook(_stash_hook(slot, spec.input_arg))
    slot.add(key, op)


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def peft_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of every injected op (removed ops excluded)."""
    return [p for m in model.modules() if isinstance(m, Op) and not m.removed for p in m.parameters()]


def inject_fixed(model: nn.Module, arch: Architecture, sites: BackboneSites | None = None,
                 op_options: dict[str, dict] | None = None) -> list[Op]:
    """Build ``arch``'s ops at their sizes into ``model``; freeze the backbone. Returns the ops.

    ``op_options`` are keyword options per op name (a retrain recipe's, ``{"lora": {"scaling": 2.0}}``);
    an op without an entry takes its class defaults."""
    sites = sites or describe(model)
    freeze(model)
    ops = []
    for p in arch.placements:
        spec = sites.spec(p.site)
        op = OPS[p.op](spec, p.size, **(op_options or {}).get(p.op, {}))
        attach(model, spec, p.key, op)
        ops.append(op)
    if arch.full_finetune:  # the backbone, not a task head: that is the caller's (counted apart)
        for name, prm in model.named_parameters():
            if name.split(".")[0] not in sites.head_prefixes:
                prm.requires_grad_(True)
    return ops


class Supernet:
    """Every module of a search space in search mode, injected into ``model``.

    ``modules[i]`` is the op of ``space.dims()[i]``. Sized ops are allocated at their largest
    candidate size. A method drives it with :meth:`set_keep`, :meth:`set_size_probs`,
    :meth:`fix_size` and :meth:`remove`, and ends with :meth:`export`.
    """

    def __init__(self, model: nn.Module, space, op_kwargs: dict[str, dict] | None = None):
        self.model, self.space = model, space
        self.dims = space.dims()
        sites = describe(model)
        freeze(model)
        self.modules: list[Op] = []
        for dim in self.dims:
            spec = sites.spec(dim.site)
            sizes = dim.sizes
            op = OPS[dim.op](spec, max(sizes) if sizes else None, candidates=sizes or None,
                             **(op_kwargs or {}).get(dim.op, {}))
            attach(model, spec, dim.key, op)
            self.modules.append(op)
        self.sized = [i for i, d in enumerate(self.dims) if d.sizes]

    def __len__(self) -> int:
        return len(self.modules)

    # ---- the method's controls ---------------------------------------------------------------------
    def set_keep(self, keep: torch.Tensor | Sequence[float] | None) -> None:
        """Keep weights per module (``[N]``; hard 0/1 with straight-through, or soft); None = all 1.

        A tensor keeps every module in the graph (its keep weight gets a gradient, even at 0); a
        Python float ``0.0`` skips the module for the coming passes (no compute, no gradient), which
        is how a search runs a sampled sub-network when it needs no gradient for the keep weights.
        """
        for i, op in enumerate(self.modules):
            op.keep = 1.0 if keep is None else keep[i]

    def set_size_probs(self, probs: torch.Tensor | None, rows: Sequence[int] | None = None) -> None:
        """Size distributions for the sized modules ``rows`` (default: all of ``self.sized``).

        ``probs[j]`` is the distribution over the candidate sizes of module ``rows[j]``; modules
        whose size is fixed are left alone.
        """
        rows = self.sized if rows is None else rows
        for j, i in enumerate(rows):
            op = self.modules[i]
            if op.size_fixed:
                continue
            op.set_size_probs(None if probs is None else probs[j])

    def fix_size(self, i: int, size: int) -> None:
        """Pin module ``i`` at ``size`` (it then slices, and takes no size gradient)."""
        op = self.modules[i]
        op.fix_size(size)
        op.size_fixed = True

    def remove(self, i: int) -> None:
        """Remove module ``i``: it is skipped in forward and backward from now on."""
        op = self.modules[i]
        op.removed = True
        for p in op.parameters():
            p.requires_grad_(False)
            p.grad = None

    def removed(self) -> list[bool]:
        return [op.removed for op in self.modules]

    def weights(self) -> list[nn.Parameter]:
        """The trainable PEFT weights (ΔW) of the modules still in the supernet."""
        return [p for op in self.modules if not op.removed for p in op.parameters()]

    # ---- export -------------------------------------------------------------------------------------
    def export(self, keep: Sequence[bool], sizes: Sequence[int | None], space_name: str | None = None,
               backbone: str | None = None) -> Architecture:
        """The fixed architecture with module ``i`` kept iff ``keep[i]``, sized ``sizes[i]``."""
        placements = [
            Placement(d.site, d.op, (sizes[i] if d.sizes else None))
            for i, d in enumerate(self.dims) if keep[i]
        ]
        return Architecture(space_name or self.space.name, backbone or self.space.backbone_name, tuple(placements))


def apply_architecture(model: nn.Module, arch: Architecture, op_options: dict[str, dict] | None = None) -> nn.Module:
    """Inject the fixed ops of ``arch`` into ``model`` (in place) and freeze everything else.

    Works on any supported transformers model (T5, BERT-like, Llama-like). After the call only the
    injected ops (or, for ``full_finetune``, the whole model) require gradients; a task head, if
    any, is left to the caller. ``op_options``: per-op keyword options (the recipe a record names, e.g.
    ``{"lora": {"scaling": 2.0}}``; ``suite.recipe.SUITE_RECIPE`` by default in the suite). Returns ``model``.
    """
    inject_fixed(model, arch, op_options=op_options)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """The number of parameters that require gradients (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
