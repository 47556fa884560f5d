"""BIPEFT (Chang et al., Findings of EMNLP 2024) and the ablations of its Table 2.

* :class:`~methods.bipeft.method.BIPEFT` (``bipeft``): the method, with a ``code_compat`` switch.
* :mod:`methods.bipeft.ablations`: ``bipeft-entangled``, ``bipeft-b2d``, ``bipeft-d2b``,
  ``bipeft-noselect``.

The algorithm is split by idea: :mod:`~methods.bipeft.gumbel` (sampling, temperature),
:mod:`~methods.bipeft.gates` (Θ, Φ and how they gate the supernet), :mod:`~methods.bipeft.sensitivity`
(Eqs. 1-4), :mod:`~methods.bipeft.trigger` (Eq. 5), :mod:`~methods.bipeft.equations` (Eqs. 6-10),
:mod:`~methods.bipeft.early_selection` (their bookkeeping), :mod:`~methods.bipeft.budget` (the export's
budget fit), :mod:`~methods.bipeft.session` (the shared loop pieces), :mod:`~core.trace`.
"""

from methods.bipeft.ablations import BinaryThenDimension, DimensionThenBinary, Entangled, NoSelect
from methods.bipeft.config import BIPEFTConfig, SearchConfig, StagedConfig
from methods.bipeft.method import BIPEFT

__all__ = ["BIPEFT", "BIPEFTConfig", "SearchConfig", "StagedConfig", "Entangled", "BinaryThenDimension",
           "DimensionThenBinary", "NoSelect"]
