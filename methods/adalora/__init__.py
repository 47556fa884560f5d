"""AdaLoRA (Zhang et al., ICLR 2023) as a budgeted search: see :mod:`methods.adalora.method`."""

from methods.adalora.config import AdaLoRAConfig
from methods.adalora.method import AdaLoRA

__all__ = ["AdaLoRA", "AdaLoRAConfig"]
