"""Search methods and manual baselines, one package (or module) each.

:data:`METHODS` maps a method name to its class, imported only when used (BoTorch costs nothing
until ``autopeft`` runs). Each line names the module that defines the class
(``methods.<name>.method:Class``, ``methods.manual:Class``), never a package that re-exports it. The
registry checks that each class subclasses ``methods.base.Method`` and that its ``name`` is its key.
Another package adds a method through the entry-point group ``autopeft_suite.methods``, or with
``METHODS.register("mine", "my_pkg.module:Mine")`` in a plugin module that a run imports everywhere
(``python -m suite run --plugin my_pkg.module``).
"""

from __future__ import annotations

from core.registry import Registry

METHODS: Registry = Registry("method", base="methods.base:Method", entry_point_group="autopeft_suite.methods")
for _name, _target in {
    "lora": "methods.manual:LoRABaseline",
    "adapter": "methods.manual:AdapterBaseline",
    "bitfit": "methods.manual:BitFitBaseline",
    "lnfit": "methods.manual:LNFitBaseline",
    "full": "methods.manual:FullFineTuning",
    "ia3": "methods.manual:IA3Baseline",
    "dora": "methods.manual:DoRABaseline",
    "autopeft": "methods.autopeft.method:AutoPEFT",
    "apet": "methods.apet.method:APET",
    "optuna": "methods.optuna_baseline.method:OptunaBaseline",
    "s3delta": "methods.s3delta.method:S3Delta",
    "prunepeft": "methods.prunepeft.method:PrunePEFT",
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
