"""The retrain recipe: how every architecture is retrained, whichever method found it.

A fair comparison retrains every architecture the same way. The recipe is the op hyperparameters
(below) plus the harness's training settings (``HarnessConfig``: lr 3e-4, AdamW, linear decay, the
task's epochs, the task head's pooling), which are the same for every job of a run.

* ``suite`` (the default): :data:`SUITE_OP_OPTIONS` for every architecture, manual baselines
  included.
* ``authors``: each architecture is retrained with its method's published settings
  (``Method.authors_recipe()``: S3Delta's LoRA scale 16, the LoRA baseline's 2, AutoPEFT's ReLU
  adapters with a parallel scale of 4, ...); the record stores the recipe and the tables label
  those rows "(authors' recipe)", so the two are never averaged together.

How the suite's settings were chosen (MiniLM, 3,000 training examples, 500 validation and test,
2 epochs, seed 0; ``python bench/recipe_probe.py --study scale`` / ``--study s1`` rerun it):

* ``lora.scaling = 16``, by validation accuracy (test in brackets), the task head on mean pooling:

  ==================  ==================  =============  =============  =============
  architecture        task                scale 1        scale 4        scale 16
  ==================  ==================  =============  =============  =============
  LoRA r=8            rotten_tomatoes     75.6 (78.4)    78.0 (80.0)    80.2 (79.6)
  LoRA r=8            glue/sst2           81.2 (80.6)    83.2 (80.4)    85.2 (82.6)
  APET S2 draw, 1e-3  rotten_tomatoes     76.2 (78.2)    77.0 (78.4)    76.0 (79.0)
  APET S2 draw, 1e-3  glue/sst2           82.0 (79.6)    82.0 (80.2)    82.2 (81.6)
  ==================  ==================  =============  =============  =============

  Mean validation 78.8 / 80.1 / 80.9. With Adam the scale multiplies the LoRA update's step, so a
  short retrain at lr 3e-4 wants a large one; 16 is also S3Delta's ``lora_alpha / r`` at rank 1.
* The task head reads the mean of the last hidden states on MiniLM (``HarnessConfig.pooling``,
  "auto" follows the checkpoint's ``modules.json``): with the [CLS] pooler, which the
  sentence-transformers checkpoint never trained, an APET S1 draw scored 56.2 (60.0) on
  rotten_tomatoes and an APET S2 draw 60.2 (62.2); with mean pooling 73.4 (75.2) and 76.2 (78.2).
  The Adapter baseline: 73.6 (76.2) with [CLS], 78.8 (79.6) with mean pooling.
* ``prefix.form = "zero_value"``: BIPEFT's gated prefix starts with a zero gate, which Adam grows by
  about one learning rate per step, so a short retrain leaves the prefix almost silent; with zero
  values and a unit gate the values learn from the first step (same parameters, same count). The
  APET S1 draw: 73.4 (75.2) gated, 75.4 (76.6) zero value.
* Adapters keep the Houlsby init (N(0, 0.01)) and ``gelu_new``: the zero-``up`` init did not help
  (Adapter baseline 77.8 (79.6); APET S1 draw 73.8 (76.0)).
* ``dora.scaling = 16``, LoRA's: DoRA's direction update is a LoRA update (``W + s B A``, then
  normalised), so the reason a short retrain at lr 3e-4 wants a large ``s`` holds for it too; it was
  not probed separately. The ``dora`` baseline's authors' recipe is 2 (``alpha = 2 r``, the DoRA
  authors' example in NVlabs/DoRA ``commonsense_reasoning``: r 32, alpha 64), as the LoRA baseline's.
* IA3 has no hyperparameter: its vectors start at one and train at the harness's learning rate under
  either recipe.
"""

from __future__ import annotations

from typing import Any

RECIPES = ("suite", "authors")

LORA_SCALING = 16.0
SUITE_OP_OPTIONS: dict[str, dict[str, Any]] = {
    "lora": {"scaling": LORA_SCALING},
    "dora": {"scaling": LORA_SCALING},
    "prefix": {"form": "zero_value"},
    "adapter_serial": {"init": "houlsby", "activation": "gelu_new", "scaling": 1.0},
    "adapter_parallel": {"init": "houlsby", "activation": "gelu_new", "scaling": 1.0},
}


def op_options(recipe: str, method) -> dict[str, dict[str, Any]]:
    """The op options a retrain under ``recipe`` uses for an architecture found by ``method`` (None:
    an architecture from a file, which only the suite's recipe can retrain)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown retrain recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    if recipe == "suite" or method is None:
        return dict(SUITE_OP_OPTIONS)
    return method.authors_recipe()


def recipe_label(recipe: str) -> str:
    """What the tables add to a row retrained with ``recipe``."""
    return "authors' recipe" if recipe == "authors" else ""
