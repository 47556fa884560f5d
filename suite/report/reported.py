"""Numbers reported by the seed paper, never measured here: ``table --reported paper`` (``reported.md``).

Chang et al., "BIPEFT: Budget-Guided Iterative Search for Parameter Efficient Fine-Tuning of Large
Pretrained Language Models", Findings of EMNLP 2024 (arXiv:2410.09079), on T5-large: its Table 1
(GLUE and SuperGLUE, mean ± std over 3 seeds, ×100, ratio in ‱ of T5-large's parameters) and Table 3
(search and re-train minutes averaged over RTE, STS-B and CoLA). Each value is copied by hand from
the suite's text of the paper (``shared/reference/bipeft-paper.md``) with its table, block and row
as printed; a cell that text does not give whole is ``None`` (printed ``n/a``), never a guess. They
form a document of their own, for a run on T5-large only (the paper's backbone): no measured table,
mean, rank or comparison ever reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

# The paper's backbone: T5-large with the tokenizer's 32,100 embeddings (the paper's ratios), or
# the config's 32,128 (``python -m suite count --backbone <t5-large dir> [--vocab-size 32100]``).
T5_LARGE_PARAMS = (737_639_424, 737_668_096)
SOURCE = ("Chang et al., BIPEFT, Findings of EMNLP 2024 (arXiv:2410.09079), copied from the suite's text of "
          "the paper (shared/reference/bipeft-paper.md)")


@dataclass(frozen=True)
class Row:
    """One printed row: its table, block and 1-based row number in that block, as printed."""

    table: str
    block: str
    number: int
    method: str
    setting: str
    ratio: str
    cells: tuple[str | None, ...]
    avg: str | None


GLUE_TASKS = ("CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI")
SUPERGLUE_TASKS = ("BoolQ", "CB", "MultiRC", "ReCoRD", "RTE", "WiC")
TABLE1_GLUE = (
    Row("Table 1", "GLUE", 1, "Fine-tune*", "–", "10000‱", ("62.25 ± 3.96", "95.87 ± 0.42", "91.86 ± 1.19",
        "89.50 ± 0.22", "91.86 ± 0.46", "89.61 ± 0.30", "94.22 ± 0.35"), "87.88"),
    Row("Table 1", "GLUE", 2, "Adapter*", "manual", "65.33‱", ("59.03 ± 3.06", "95.90 ± 0.29", "93.02 ± 0.28",
        "88.39 ± 0.06", "91.77 ± 0.25", "89.53 ± 0.07", "94.17 ± 0.19"), "87.40"),
    Row("Table 1", "GLUE", 3, "LoRA(r=8)*", "manual", "21.32‱", ("58.43 ± 4.16", "95.79 ± 0.27", "92.21 ± 0.88",
        "88.35 ± 0.25", "91.78 ± 0.31", "89.38 ± 0.32", "94.14 ± 0.12"), "87.15"),
    Row("Table 1", "GLUE", 4, "BitFit*", "manual", "8.13‱", ("56.98 ± 3.89", "96.24 ± 0.33", "92.16 ± 0.68",
        "88.12 ± 0.07", "91.59 ± 0.08", "89.10 ± 0.09", "94.07 ± 0.21"), "86.90"),
    Row("Table 1", "GLUE", 5, "LNFit*", "manual", "1.70‱", ("56.15 ± 4.06", "95.81 ± 0.20", "91.71 ± 0.39",
        "88.17 ± 0.10", "91.37 ± 0.24", "89.11 ± 0.09", "93.99 ± 0.20"), "86.62"),
    Row("Table 1", "GLUE", 6, "AutoPEFT", "S1", "18.90‱", ("59.59 ± 1.24", "95.87 ± 0.23", "91.06 ± 0.52",
        "88.21 ± 0.04", "91.42 ± 0.08", "89.16 ± 0.10", "93.90 ± 0.15"), "87.03"),
    Row("Table 1", "GLUE", 7, "BIPEFT", "S1", "1.39‱", ("59.04 ± 8.20", "95.70 ± 0.08", "92.10 ± 0.61",
        "88.28 ± 0.09", "91.83 ± 0.40", "89.14 ± 0.01", "94.06 ± 0.01"), "87.16"),
    Row("Table 1", "GLUE", 8, "S3Delta-M*", "S2", "1.39‱", ("59.34 ± 4.75", "95.84 ± 0.14", "92.13 ± 2.09",
        "88.04 ± 0.23", "91.58 ± 0.25", "89.14 ± 0.13", "94.12 ± 0.12"), "87.17"),
    # QQP: the text gives "88.12 \pm 0.12" and then "11", so its std is not read whole.
    # QNLI: the text gives "593.95 \pm 0.08"; the row's AVG (87.42) is that of 93.95.
    Row("Table 1", "GLUE", 9, "PrunePEFT", "S2", "1.39‱", ("60.39 ± 5.90", "95.87 ± 0.09", "92.83 ± 1.41",
        "88.12 ± n/a", "91.62 ± 0.61", "89.19 ± 0.15", "93.95 ± 0.08"), "87.42"),
    Row("Table 1", "GLUE", 10, "BIPEFT", "S2", "1.39‱", ("62.97 ± 3.72", "96.27 ± 0.24", "93.22 ± 0.62",
        "88.28 ± 0.02", "92.23 ± 0.28", "89.28 ± 0.02", "94.25 ± 0.06"), "88.07"),
)
# The text's SuperGLUE block has 9 rows: the S2 BIPEFT row that closes the paper's table is not in it.
TABLE1_SUPERGLUE = (
    Row("Table 1", "SuperGLUE", 1, "Fine-tune*", "–", "10000‱", ("86.67 ± 0.21", "96.43 ± 2.92", "76.65 ± 1.01",
        "85.03 ± 0.67", "88.49 ± 2.12", "73.12 ± 1.71"), "84.40"),
    Row("Table 1", "SuperGLUE", 2, "Adapter*", "manual", "65.33‱", ("85.98 ± 0.68", "94.64 ± 6.19", "77.60 ± 0.84",
        "85.96 ± 0.37", "89.21 ± 2.94", "71.63 ± 0.90"), "84.17"),
    Row("Table 1", "SuperGLUE", 3, "LoRA(r=8)*", "manual", "21.32‱", ("85.06 ± 0.70", "91.96 ± 3.42",
        "76.94 ± 1.16", "85.84 ± 0.21", "87.05 ± 0.59", "72.10 ± 1.31"), "83.16"),
    # 21.32‱ as printed; BitFit's count on T5-large is 8.13‱ (the GLUE block): methods.md §6 calls it a copy error.
    Row("Table 1", "SuperGLUE", 4, "BitFit*", "manual", "21.32‱", ("85.02 ± 0.48", "89.29 ± 2.92", "75.79 ± 1.15",
        "85.85 ± 0.32", "86.15 ± 1.48", "72.34 ± 1.61"), "82.41"),
    # MultiRC's std, ReCoRD's first digit and RTE are missing from the text.
    Row("Table 1", "SuperGLUE", 5, "LNFit*", "manual", "1.70‱", ("84.07 ± 0.50", "82.14 ± 2.92", "75.52 ± n/a",
        None, None, "69.28 ± 1.49"), "80.64"),
    Row("Table 1", "SuperGLUE", 6, "AutoPEFT", "S1", "17.69‱", ("83.39 ± 0.13", "93.75 ± 4.49", "76.49 ± 0.41",
        "85.59 ± 0.13", "85.99 ± 0.42", "72.17 ± 1.19"), "82.89"),
    # BoolQ's std and CB's mean are missing from the text (CB: "6 ± 3.58").
    Row("Table 1", "SuperGLUE", 7, "BIPEFT", "S1", "1.39‱", ("84.55 ± n/a", "n/a ± 3.58", "75.90 ± 0.12",
        "85.94 ± 0.05", "88.85 ± 1.53", "70.38 ± 0.66"), "83.08"),
    Row("Table 1", "SuperGLUE", 8, "S3Delta-M*", "S2", "1.39‱", ("84.92 ± 0.68", "92.86 ± 2.92", "76.38 ± 0.92",
        "86.10 ± 0.11", "86.69 ± 1.90", "71.63 ± 1.07"), "83.10"),
    # BoolQ's mean and the AVG are missing from the text.
    Row("Table 1", "SuperGLUE", 9, "PrunePEFT", "S2", "1.39‱", ("n/a ± 0.47", "91.66 ± 4.12", "76.66 ± 0.60",
        "85.46 ± 0.81", "87.29 ± 0.42", "70.37 ± 0.23"), None),
)
# Table 3: setting, method, search minutes, re-train minutes, their ratio, as printed.
TABLE3 = (("S1", "AutoPEFT", "348", "22", "15.80"), ("S1", "BIPEFT", "13", "22", "0.59"),
          ("S2", "S3Delta", "125", "20", "6.30"), ("S2", "PrunePEFT", "20", "20", "1.00"),
          ("S2", "BIPEFT", "13", "20", "0.65"))
REPORTED = ("paper",)


def on_t5_large(backbones: dict[str, int | None]) -> bool:
    """Whether every backbone (name -> parameters) is T5-large, by its parameter count."""
    return bool(backbones) and all(n in T5_LARGE_PARAMS for n in backbones.values())


def check(reported: str, backbones: dict[str, int | None]) -> None:
    """Refuse ``--reported`` for an unknown source or a run that is not on T5-large (``backbones``:
    name -> parameters), in one line: the paper's numbers beside another model's would read as a
    comparison of methods when it is one of models."""
    if reported not in REPORTED:
        raise ValueError(f"unknown --reported {reported!r}; valid: {', '.join(REPORTED)}")
    if not on_t5_large(backbones):
        runs = ", ".join(f"{b} ({n:,} parameters)" if n else b for b, n in sorted(backbones.items()))
        raise ValueError(f"--reported {reported}: the paper's numbers are on T5-large ({T5_LARGE_PARAMS[0]:,} "
                         f"parameters); this run is on {runs}, so they are not written beside it")


def document():
    """``reported.md``: Table 1's GLUE and SuperGLUE blocks and Table 3, each row with its source."""
    from suite.report.tables import Document, Table

    doc = Document("Reported by the BIPEFT paper (T5-large; not measured by this run)")
    for block, tasks, rows in (("GLUE", GLUE_TASKS, TABLE1_GLUE), ("SuperGLUE", SUPERGLUE_TASKS, TABLE1_SUPERGLUE)):
        doc.tables.append(Table(
            f"Table 1, {block} (reported)", ["Source", "Ratio", "Method", "Setting", *tasks, "AVG"],
            [[f"{r.table}, {r.block}, row {r.number}", r.ratio, r.method, r.setting,
              *[c or "n/a" for c in r.cells], r.avg or "n/a"] for r in rows], "lrll" + "r" * (len(tasks) + 1)))
    doc.tables.append(Table("Table 3, efficiency (reported)", ["Source", "Setting", "Method", "Search (min)",
                                                                "Re-train (min)", "Ratio"],
                            [[f"Table 3, row {i}", *row] for i, row in enumerate(TABLE3, 1)], "lllrrr"))
    doc.notes += [
        f"Source: {SOURCE}. Table 1: the test split's metric ×100 as its Appendix A names it (accuracy on SST-2, "
        "MNLI, QNLI, BoolQ, CB, RTE and WiC; F1 on MRPC, QQP, MultiRC and ReCoRD; Matthews correlation on CoLA; "
        "Pearson correlation on STS-B), mean ± std over 3 seeds; "
        "Ratio: trainable parameters / T5-large's in ‱; * marks the rows the paper copied from S3Delta "
        "(Hu et al., 2022). Table 3: minutes on the paper's GPUs, averaged over RTE, STS-B and CoLA.",
        "Setting is the paper's search space (S1: AutoPEFT's; S2: S3Delta's and PrunePEFT's), as its §4.1-4.2 "
        "assign the rows; the text of Table 1 does not print it. n/a: a value the suite's text of the paper does "
        "not give whole (GLUE PrunePEFT QQP's std; SuperGLUE LNFit MultiRC's std, ReCoRD and RTE, BIPEFT BoolQ's "
        "std and CB's mean, PrunePEFT BoolQ's mean and AVG); read it in the paper. The text's SuperGLUE block "
        "also lacks the table's last row (BIPEFT in S2).",
        "These are the paper's numbers, not this run's: its own tables (accuracy.md, efficiency.md, comparison.md) "
        "never read them, and no test compares the two (other data sizes, recipes and hardware).",
        "",
    ]
    return doc
