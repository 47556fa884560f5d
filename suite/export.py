"""``python -m suite export``: a run's found model as a folder people load.

* ``--format suite``: ``config.json`` (the backbone and its revision, the architecture, the
  recipe's op settings, the task head's labels and pooling, the record's metrics), the trained
  ``weights.safetensors`` and a ``README.md``; load it with :func:`spaces.pretrained.load_pretrained`.
* ``--format peft``: a Hugging Face peft adapter folder for ``PeftModel.from_pretrained(backbone,
  DIR)``, for every architecture peft can express. One peft adapter is one tuner: LoRA with
  per-module ranks (``rank_pattern``) and the recipe's scale (``alpha_pattern``), or DoRA the same
  way (``use_dora=True``, the magnitudes at their trained values), or IA3 (``IA3Config`` with the
  ``ffn.down`` projections as ``feedforward_modules``); with it, the norms an LNFit or BitFit
  placement trains and the task head (``modules_to_save``, at their trained values), and (LoRA or
  DoRA) BitFit on linears that have a bias (``bias="all"``). Bottleneck adapters, the low-rank
  adapter, the prefix, two tuners in one architecture, and a BitFit on a linear that the backbone
  or the tuner cannot carry are refused, naming those placements.

Either is written into a temporary folder beside ``--to`` and renamed into place, so a refused or
failed export leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from spaces.architecture import Architecture
from spaces.pretrained import CONFIG_FILE, FORMAT, WEIGHTS_FILE, load_pretrained
from suite.rundir import file_sha256, not_a_folder

FORMATS = ("suite", "peft")
PEFT_TUNERS = ("lora", "dora", "ia3")  # a peft adapter carries one of these ...
PEFT_OPS = (*PEFT_TUNERS, "bitfit", "lnfit")  # ... and trains norms and biases beside it


class ExportError(ValueError):
    """A run or an architecture that cannot be exported as asked; one line."""


def find_record(out: Path, run_id: str) -> dict[str, Any]:
    """The ok record ``run_id`` of the run in ``out``, with its weights; the run's records must all be
    valid (a file of ``records/`` that is not a record is refused, naming it, as ``table`` does)."""
    from suite.records import valid_records

    records = {r["run_id"]: r for r in valid_records(out)}
    if run_id not in records:
        raise ExportError(f"no record {run_id!r} in {out}; valid run ids: {', '.join(sorted(records)) or 'none'}")
    record = records[run_id]
    if record["status"] != "ok":
        raise ExportError(f"{run_id} failed ({(record.get('error') or '').splitlines()[0]}): nothing to export")
    if "weights" not in (record.get("files") or {}):
        raise ExportError(f"{run_id} kept no weights (the run used --no-save-weights): retrain it to export it")
    return record


def suite_config(record: dict[str, Any], weights_sha256: str) -> dict[str, Any]:
    from suite.tasks import get_task

    task = get_task(record["task"])
    retrain = record.get("retrain") or {}
    return {
        "format": FORMAT, "version": 1, "run_id": record["run_id"], "method": record["method"],
        "backbone": record["backbone"], "backbone_revision": retrain.get("backbone_revision"),
        "architecture": record["architecture"], "op_options": (retrain.get("recipe") or {}).get("op_options", {}),
        "recipe": (retrain.get("recipe") or {}).get("name", "suite"), "pooling": retrain.get("pooling"),
        "task": record["task"], "seed": record["seed"], "labels": list(task.labels), "num_labels": task.num_labels,
        "metrics": record["metrics"], "params": record["params"], "weights_sha256": weights_sha256,
    }


def readme(config: dict[str, Any], fmt: str) -> str:
    test = ", ".join(f"{k} {v:.2f}" for k, v in config["metrics"]["test"].items())
    if fmt == "peft":
        load = ("from peft import PeftModel\nfrom transformers import AutoModelForSequenceClassification\n"
                f"base = AutoModelForSequenceClassification.from_pretrained(BACKBONE, num_labels={config['num_labels']})\n"
                "model = PeftModel.from_pretrained(base, THIS_FOLDER).eval()")
        if config.get("pooling") == "mean":
            load += ("\n# the head was trained on the mean of the last hidden states (the checkpoint's own pooling):\n"
                     "hidden = model.base_model.model.base_model(**batch).last_hidden_state\n"
                     "mask = batch['attention_mask'].unsqueeze(-1).to(hidden.dtype)\n"
                     "logits = model.base_model.model.classifier((hidden * mask).sum(1) / mask.sum(1))")
    else:
        load = "from spaces.pretrained import load_pretrained\nmodel = load_pretrained(BACKBONE, THIS_FOLDER)"
    return (f"# {config['method']} on {config['task']} ({config['run_id']})\n\n"
            f"Exported by the AutoPEFT benchmark suite. Backbone: {config['backbone']}; "
            f"{config['params']['peft']:,} trainable PEFT parameters ({config['params']['permyriad']:.2f}‱); "
            f"retrained with the {config['recipe']} recipe. Test: {test}.\n\n```python\n{load}\n```\n")


def export(out: Path | str, run_id: str, to: Path | str, fmt: str = "suite") -> Path:
    """Export ``run_id`` of the run in ``out`` into the new folder ``to`` (see the module docstring)."""
    out, to = Path(out), Path(to)
    if fmt not in FORMATS:
        raise ExportError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise ExportError(f"--to {to} exists and is not an empty folder: choose a new one")
    problem = not_a_folder(to)  # what is left: a file above it
    if problem:
        raise ExportError(f"--to {to} {problem}: choose a new folder")
    record = find_record(out, run_id)
    weights = out / record["files"]["weights"]["path"]
    if not weights.is_file():
        raise ExportError(f"{weights} (named by the record) is missing")
    digest = file_sha256(weights)
    if digest != record["files"]["weights"]["sha256"]:
        raise ExportError(f"{weights} is corrupted: its sha256 is not the one its record names")
    if fmt == "peft":
        refuse_for_peft(record)
        _require_peft()
    to.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{to.name}.", dir=to.parent))
    try:
        config = suite_config(record, digest)
        shutil.copyfile(weights, staging / WEIGHTS_FILE)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        if fmt == "peft":
            write_peft(staging, config)
            for name in (CONFIG_FILE, WEIGHTS_FILE):  # the folder is peft's alone
                (staging / name).unlink()
        (staging / "README.md").write_text(readme(config, fmt))
        if to.exists():
            to.rmdir()
        staging.rename(to)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return to


# ---- peft ---------------------------------------------------------------------------------------
def _require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ExportError("--format peft needs the peft package: pip install -c constraints.txt -e '.[peft]' "
                          "(or export with --format suite, which needs nothing more)") from None


def refuse_for_peft(record: dict[str, Any]) -> None:
    """One error naming every placement peft cannot express (nothing is written)."""
    from suite.backbones import backbone_sites

    arch = Architecture.from_dict(record["architecture"])
    sites = backbone_sites(record["backbone"])
    tuners = sorted({p.op for p in arch.placements if p.op in PEFT_TUNERS})
    bad = []
    for p in arch.placements:
        spec = sites.spec(p.site)
        if p.op not in PEFT_OPS:
            bad.append(f"{p.op} at {p.site}")
        elif p.op == "bitfit" and spec.kind != "norm" and tuners == ["ia3"]:
            bad.append(f"bitfit at {p.site} (a peft IA3 adapter trains no bias)")
        elif p.op == "bitfit" and not _has_bias(record["backbone"], spec):
            bad.append(f"bitfit at {p.site} (the backbone has no bias there)")
    if arch.full_finetune:
        bad.append("full fine-tuning")
    if len(tuners) > 1:
        bad.append(f"{' and '.join(tuners)} together (a peft adapter holds one of them)")
    if not tuners and not bad:
        bad.append("no LoRA, DoRA or IA3 placement (a peft adapter needs one to carry the norms and biases)")
    if bad:
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise ExportError(f"peft cannot express {len(bad)} placement(s) of {record['run_id']}: {shown}; "
                          "use --format suite")


def _has_bias(backbone: str, spec) -> bool:
    from suite.backbones import build, load_config

    module = build(load_config(backbone), device="meta").get_submodule(spec.module)
    return getattr(module, "bias", None) is not None


def write_peft(folder: Path, config: dict[str, Any]) -> None:
    """Build the peft model of the exported one (from the real backbone) and let peft save it."""
    import torch
    from peft import get_peft_model

    from suite.backbones import hub_id, load_backbone

    def backbone():  # seeded as in the retrain: the same head init, and the same weights for a tiny random model
        torch.manual_seed(config["seed"])
        return load_backbone(config["backbone"], num_labels=config["num_labels"])

    ours = load_pretrained(backbone(), folder)
    arch = Architecture.from_dict(config["architecture"])
    sites = _sites_of(ours)
    tuner = next(p.op for p in arch.placements if p.op in PEFT_TUNERS)
    norms = sorted({sites.spec(p.site).module for p in arch.placements if p.op in ("lnfit", "bitfit")
                    and sites.spec(p.site).kind == "norm"})
    linear_bitfit = [p for p in arch.placements if p.op == "bitfit" and sites.spec(p.site).kind != "norm"]
    placements = {sites.spec(p.site).module: p for p in arch.placements if p.op == tuner}
    peft_model = get_peft_model(backbone(), _peft_config(tuner, placements, config["op_options"],
                                                         [*sites.head_prefixes, *norms] or None, bool(linear_bitfit)))
    with torch.no_grad():
        for module, p in placements.items():
            _copy_tuner(peft_model.base_model.model.get_submodule(module), _op(ours, module, p))
        for module in norms:  # the norm's effective scale and bias: its own plus the ops' deltas
            wrapper = peft_model.base_model.model.get_submodule(module)
            target = wrapper.modules_to_save["default"]
            for p in arch.placements:
                if sites.spec(p.site).module != module:
                    continue
                op = _op(ours, module, p)
                if p.op == "lnfit":
                    target.weight.add_(op.weight)
                else:
                    target.bias.add_(op.bias)
        for p in linear_bitfit:
            layer = peft_model.base_model.model.get_submodule(sites.spec(p.site).module)
            getattr(layer, "base_layer", layer).bias.add_(_op(ours, sites.spec(p.site).module, p).bias)
        for prefix in sites.head_prefixes:
            target = peft_model.base_model.model.get_submodule(prefix).modules_to_save["default"]
            target.load_state_dict(ours.get_submodule(prefix).state_dict())
    peft_model.save_pretrained(str(folder))
    config_path = folder / "adapter_config.json"  # name the backbone as the hub does, not by a local path
    saved = json.loads(config_path.read_text())
    saved["base_model_name_or_path"] = hub_id(config["backbone"])
    config_path.write_text(json.dumps(saved, indent=2) + "\n")


def _peft_config(tuner: str, placements: dict, op_options: dict, modules_to_save: list[str] | None, bias: bool):
    """The peft config of one tuner (``lora``, ``dora`` or ``ia3``) on ``placements`` (module path -> placement)."""
    from peft import IA3Config, LoraConfig

    from spaces.ops.ia3 import FEEDFORWARD

    if tuner == "ia3":
        return IA3Config(target_modules=sorted(placements), modules_to_save=modules_to_save,
                         feedforward_modules=sorted(m for m, p in placements.items() if p.site.position in FEEDFORWARD))
    scale = (op_options.get(tuner) or {}).get("scaling", 1.0)
    ranks = {module: p.size for module, p in placements.items()}
    return LoraConfig(
        r=max(ranks.values()), lora_alpha=scale * max(ranks.values()), lora_dropout=0.0, use_dora=tuner == "dora",
        target_modules=sorted(ranks), rank_pattern=ranks, alpha_pattern={m: scale * r for m, r in ranks.items()},
        modules_to_save=modules_to_save, bias="all" if bias else "none",
    )


def _copy_tuner(layer, op) -> None:
    """Our op's weights into peft's layer: LoRA's ``A``/``B``, DoRA's magnitude ``||W|| + offset``, IA3's vector."""
    import torch

    if op.name == "ia3":
        layer.ia3_l["default"].copy_(op.scale.view_as(layer.ia3_l["default"]))
        return
    layer.lora_A["default"].weight.copy_(op.A)
    layer.lora_B["default"].weight.copy_(op.B)
    if op.name == "dora":
        base_norm = torch.linalg.norm(layer.get_base_layer().weight.to(op.magnitude.dtype), dim=1)
        layer.lora_magnitude_vector["default"].weight.copy_(base_norm + op.magnitude)


def _sites_of(model):
    from spaces.sites import describe

    return describe(model)


def _op(model, module: str, placement):
    from spaces.inject import SLOT

    slot = getattr(model.get_submodule(module), SLOT)
    return slot.ops[placement.key.replace(".", "_").replace(":", "__")]
