"""A search that stopped at its step cap is marked † and its footnote says how far it got (issue 20, §3).

The footnote names each such search with "stopped at the step cap after N of Z triggers", whether
or not the run was started with ``--allow-step-cap`` (a search can reach its step cap in a plan long
enough for its method), and never claims that option was given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from suite.report import write_reports

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CAPPED = "bipeft--s2--glue_mrpc--seed1--b3157"


def test_a_step_capped_search_is_marked_with_how_far_it_got(tmp_path):
    out = tmp_path / "run"
    shutil.copytree(FIXTURES / "records", out / "records")
    shutil.copytree(FIXTURES / "predictions", out / "predictions")
    path = out / "records" / f"{CAPPED}.json"
    record = json.loads(path.read_text())
    record["search"].update(stop_reason="step_cap", triggers=39, max_triggers=100, steps=128, planned_steps=128)
    path.write_text(json.dumps(record))
    write_reports(out)
    # the fixture has a BIPEFT row per budget: the footnote names the row as its table prints it
    # (≤1.39‱ = 3,157 parameters; efficiency.md gives the space a column of its own)
    for name, row in (("accuracy.md", "BIPEFT (S2, ≤1.39‱)"), ("efficiency.md", "BIPEFT (≤1.39‱)")):
        text = (out / name).read_text()
        assert any(line.startswith("|") and f"{row} †" in line for line in text.splitlines()), name
        assert f"- {row}, MRPC, seed 1: stopped at the step cap after 39 of 100 triggers (128 of 128 " \
            "planned steps)." in text, name
        assert "--allow-step-cap" not in text and text.count("stopped at the step cap after") == 1
