"""bench/gpu_check.py, the prepared GPU check: its CPU path on a tiny T5, and that it needs neither Ray nor datasets
(the GPU machine it is written for has neither)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("peft_lora", "suite_lora", "s2_supernet", "bipeft_search", "compile_off", "compile_on")


def test_gpu_check_runs_on_cpu_with_a_tiny_t5(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--tiny", "--device", "cpu", "--steps", "2",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ms/step" in proc.stdout and "BIPEFT search step" in proc.stdout and "projected" in proc.stdout
    report = json.loads(out.read_text())
    rows = {r["key"]: r for r in report["rows"]}
    assert list(rows) == list(ROWS)
    for key in ROWS:
        assert rows[key]["ms_per_step"] > 0, (key, rows[key])
    assert rows["peft_lora"]["trainable"] == rows["suite_lora"]["trainable"]  # the same LoRA, two implementations
    assert rows["bipeft_search"]["search_retrain_ratio"] > 0
    assert "error" not in rows["compile_on"] and rows["compile_on"]["compile_warmup_s"] > 0
    assert report["projection"]["search_min"] > 0 and report["projection"]["retrain_min"] > 0
    assert report["imported_ray_or_datasets"] == []


def test_gpu_check_imports_neither_ray_nor_datasets():
    code = ("import sys; sys.path.insert(0, 'bench'); import gpu_check; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('ray', 'datasets')]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
