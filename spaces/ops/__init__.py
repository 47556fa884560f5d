"""PEFT ops, one file each. ``OPS`` maps an op name to its class."""

from spaces.ops.adapter_lr import LowRankAdapter
from spaces.ops.adapter_parallel import ParallelAdapter
from spaces.ops.adapter_serial import SerialAdapter
from spaces.ops.base import Op
from spaces.ops.bitfit import BitFit
from spaces.ops.lnfit import LNFit
from spaces.ops.lora import LoRA
from spaces.ops.prefix import Prefix

OPS: dict[str, type[Op]] = {
    cls.name: cls for cls in (LoRA, LowRankAdapter, BitFit, LNFit, SerialAdapter, ParallelAdapter, Prefix)
}


def get_op(name: str) -> type[Op]:
    """The op class called ``name``; a clear error naming the valid ops otherwise."""
    try:
        return OPS[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; valid ops: {', '.join(sorted(OPS))}") from None


__all__ = ["OPS", "Op", "get_op", "LoRA", "LowRankAdapter", "BitFit", "LNFit", "SerialAdapter",
           "ParallelAdapter", "Prefix"]
