"""``python -m suite run --architecture FILE.json|RUN_DIR:RUN_ID``: structure transfer (the paper's
Table 4). One given architecture is read (every problem a one-line error naming the file and the
field), checked against the target backbone's sites, and planned for retraining on the tasks with
the shared harness, no search; its rows stay apart in the tables as "METHOD (from TASK)"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from suite.inputs import OFFLINE_BACKBONE, _harness, _recipe, parse_seeds, plan_tasks
from suite.learning_rate import lr_fields
from suite.plan import Plan, UsageError, transfer_space
from suite.rundir import RunDir, read_json
from suite.tracking import parse_log


def read_architecture(spec: str, sites) -> dict[str, Any]:
    """``--architecture FILE.json`` or ``--architecture RUN_DIR:RUN_ID``: the architecture and where it
    came from (its digest, and from a run its method, task, budget and backbone). Checked against
    the target backbone's sites: an architecture of a deeper backbone is an error (no layer mapping
    is applied)."""
    from spaces.architecture import Architecture
    from suite.records import validate_record

    folder, sep, run = spec.rpartition(":")
    source: dict[str, Any] = {"method": "architecture", "task": None}
    if sep and Path(folder).is_dir():
        path = RunDir(folder).record(run)
        if not path.is_file():
            raise UsageError(f"--architecture {spec}: {path} does not exist")
        record, where = read_json(path, "a record"), f"--architecture {spec}: {path}"
        try:
            validate_record(record)
        except ValueError as e:
            raise UsageError(f"{where}: {e}") from None
        if not record["architecture"]:
            raise UsageError(f"{where} has no architecture (its search failed)")
        data, where = record["architecture"], f"{where}: architecture"
        source = {"method": record["method"], "task": record["task"], "run_id": run, "backbone": record["backbone"],
                  "budget_fraction": record["budget"]["fraction"], "budget_params": record["budget"]["params"]}
    else:
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"--architecture {spec}: no such file (or RUN_DIR:RUN_ID)")
        data, where = read_json(path, "an architecture"), f"--architecture {path}"
    try:
        arch = Architecture.from_dict(data)
    except ValueError as e:
        raise UsageError(f"{where}: {e}") from None
    missing = [str(p.site) for p in arch.placements if p.site not in sites.by_site]
    if missing:
        layers = 1 + max((s.site.layer for s in sites.specs), default=-1)
        raise UsageError(f"--architecture {spec} does not fit this backbone ({layers} layers): it has no site "
                         f"{missing[0]} ({len(missing)} such placements); no mapping between depths is applied")
    return {"architecture": arch.to_dict(), "source": {**source, "digest": arch.digest()}}


def transfer_plan(args: Any) -> Plan:
    """``run --architecture ...``: retrain one given architecture on the tasks (no search)."""
    from methods import METHODS
    from suite.backbones import backbone_sites

    if args.methods:
        raise UsageError("--architecture retrains a given architecture: drop --methods")
    tasks = plan_tasks(args.tasks)
    backbone = args.backbone or OFFLINE_BACKBONE
    sites = backbone_sites(backbone)
    transfer = read_architecture(args.architecture, sites)
    recipe = _recipe(args)
    source = transfer["source"]["method"]
    if recipe == "authors" and source not in METHODS:
        raise UsageError(f"--retrain-recipe authors needs the architecture's method, and {source!r} is not one "
                         "here: use the suite's recipe")
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a directory")
    return Plan(methods=(source,), space=transfer_space(transfer["source"]), tasks=tuple(tasks), backbone=backbone,
                seeds=parse_seeds(args.seeds or "0"), data_dir=args.data_dir, harness=_harness(args),
                backbone_params=sites.backbone_params, retrain_recipe=recipe,
                save_weights=not getattr(args, "no_save_weights", False), transfer=transfer,
                log=parse_log(getattr(args, "log", None)),
                **lr_fields(args, sites.family, transfer["architecture"].get("full_finetune", False)))
