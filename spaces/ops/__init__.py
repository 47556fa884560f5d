"""PEFT ops, one file each. ``OPS`` is the registry of op names -> op classes.

Entries are lazy (``"module:Class"``), so that reading an :class:`~spaces.architecture.Architecture`
(which checks its op names here) imports no torch module until an op is built; the registry checks
that each class subclasses :class:`~spaces.ops.base.Op` and that its ``name`` is its key. Add an op
with one line below (see the README's "Add an op"), or, from another package, through the
entry-point group ``autopeft_suite.ops``.
"""

from core.registry import Registry

OPS: Registry = Registry("op", base="spaces.ops.base:Op", entry_point_group="autopeft_suite.ops")
for _name, _target in {
    "lora": "spaces.ops.lora:LoRA",
    "adapter_lr": "spaces.ops.adapter_lr:LowRankAdapter",
    "bitfit": "spaces.ops.bitfit:BitFit",
    "lnfit": "spaces.ops.lnfit:LNFit",
    "adapter_serial": "spaces.ops.adapter_serial:SerialAdapter",
    "adapter_parallel": "spaces.ops.adapter_parallel:ParallelAdapter",
    "prefix": "spaces.ops.prefix:Prefix",
    "ia3": "spaces.ops.ia3:IA3",
    "dora": "spaces.ops.dora:DoRA",
}.items():
    OPS.register(_name, _target)
