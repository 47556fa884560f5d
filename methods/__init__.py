"""Search methods and manual baselines, one package (or module) each.

:data:`METHODS` maps a method name to its class, imported only when used (BoTorch costs nothing
until ``autopeft`` runs). Register an out-of-tree method with
``METHODS.register("mine", "my_pkg.module:MyMethod")``.
"""

from __future__ import annotations

from suite.registry import Registry

METHODS: Registry = Registry("method")
for _name, _target in {
    "lora": "methods.manual:LoRABaseline",
    "adapter": "methods.manual:AdapterBaseline",
    "bitfit": "methods.manual:BitFitBaseline",
    "lnfit": "methods.manual:LNFitBaseline",
    "full": "methods.manual:FullFineTuning",
    "autopeft": "methods.autopeft.method:AutoPEFT",
    "apet": "methods.apet.method:APET",
    "optuna": "methods.optuna_search.method:OptunaBaseline",
    "s3delta": "methods.s3delta:S3Delta",
    "prunepeft": "methods.prunepeft:PrunePEFT",
    "bipeft": "methods.bipeft.method:BIPEFT",
    "bipeft-entangled": "methods.bipeft.ablations:Entangled",
    "bipeft-b2d": "methods.bipeft.ablations:BinaryThenDimension",
    "bipeft-d2b": "methods.bipeft.ablations:DimensionThenBinary",
    "bipeft-noselect": "methods.bipeft.ablations:NoSelect",
}.items():
    METHODS.register(_name, _target)


def get_method(name: str, config=None, **overrides):
    """An instance of the method ``name`` (with its config); did-you-mean on unknown names."""
    return METHODS.get(name)(config, **overrides)
