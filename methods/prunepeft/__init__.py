"""PrunePEFT (a re-implementation of Lawton et al., Findings of ACL 2023): see :mod:`methods.prunepeft.method`."""

from methods.prunepeft.config import PrunePEFTConfig
from methods.prunepeft.method import PrunePEFT

__all__ = ["PrunePEFT", "PrunePEFTConfig"]
