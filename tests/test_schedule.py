"""The plan as a Ray Tune searcher (``suite.schedule.PlanSearcher``), driven by hand as Ray Tune drives
it: which trial it suggests while others run, per-job limits, no barrier, its saved state."""

from __future__ import annotations

import json

import pytest
from ray.tune.search import Searcher

from methods.base import PARAMS, RATIO, SCORE
from suite.cli import build_parser
from suite.inputs import make_plan
from suite.outcomes import SearchOutcome
from suite.schedule import PlanSearcher
from suite.trials import CANDIDATE, RETRAIN, SEARCH
from suite.writers import Recorder

# two jobs of each kind: manual (LoRA), one-shot (S3Delta), black-box (APET, best of 3 draws, 2 at once)
ARGV = ["run", "--methods", "lora,s3delta,apet", "--seeds", "0,1", "--space", "s2", "--backbone", "tiny-bert",
        "--tasks", "demo/rotten_tomatoes", "--budget-params", "1000", "--allow-step-cap",
        "--method-option", "apet.candidates=3", "--method-option", "apet.max_concurrent=2"]


@pytest.fixture(scope="module")
def plan():
    return make_plan(build_parser().parse_args(ARGV))


def searcher_for(plan, out) -> PlanSearcher:
    return PlanSearcher(Recorder(plan, out, {"cpu": 1.0, "gpu": 0.0}, log=lambda *a: None))


class Driver:
    """Ray Tune's side: fresh trial ids, and what the run's callback does as a trial ends."""

    def __init__(self, searcher: PlanSearcher):
        self.searcher, self.n, self.running = searcher, 0, {}

    def suggest(self):
        self.n += 1
        config = self.searcher.suggest(f"t{self.n}")
        if isinstance(config, dict):
            self.running[f"t{self.n}"] = config
        return config

    def fill(self, slots: int) -> list[dict]:
        """Suggest until ``slots`` trials run or nothing is ready."""
        started = []
        while len(self.running) < slots and isinstance(config := self.suggest(), dict):
            started.append(config)
        return started

    def end(self, config: dict) -> None:
        trial_id = next(t for t, c in self.running.items() if c is config)
        del self.running[trial_id]
        recorder, job = self.searcher.recorder, self.searcher.recorder.jobs[config["trial"]["run_id"]]
        result = None
        if config["kind"] == CANDIDATE:
            search = self.searcher.searches[job.run_id]
            arch = search.method.candidate(search.problem.space, config["candidate"])
            placement = {"started_at": "2026-01-01T00:00:00+00:00", "ended_at": "2026-01-01T00:00:10+00:00"}
            result = {SCORE: 50.0 + config["index"], RATIO: 0.001, PARAMS: search.problem.space.param_count(arch),
                      "time_total_s": 10.0, "placement": json.dumps(placement)}
        self.searcher.on_trial_complete(trial_id, result)
        if config["kind"] == SEARCH:  # the callback keeps what the search found (any architecture will do)
            recorder.save_found(job, SearchOutcome(next(iter(recorder.found.values())).architecture, 1.0, {}))
        elif config["kind"] == RETRAIN:  # ... and writes the record
            recorder.write_failed(job, "a stand-in for the record")


def kinds(configs: list[dict]) -> list[tuple[str, str]]:
    return [(c["kind"], c["trial"]["job"]["method"]) for c in configs]


def test_every_free_slot_gets_ready_work_of_any_job_within_each_jobs_limit(plan, tmp_path):
    driver = Driver(searcher_for(plan, tmp_path))
    first = driver.fill(slots=8)
    # the longest pipelines first: both black-box jobs' candidates side by side (2 each: APET's limit),
    # then the one-shot searches, then the manual retrains, whose architectures need no search
    assert kinds(first) == [(CANDIDATE, "apet")] * 4 + [(SEARCH, "s3delta")] * 2 + [(RETRAIN, "lora")] * 2
    assert [c["trial"]["job"]["seed"] for c in first[:4]] == [0, 0, 1, 1]
    assert driver.suggest() is None  # nothing else is ready: each APET job has 2 of its 3 running

    driver.end(first[0])  # a candidate of seed 0 ends: that job's third candidate takes the slot
    (third,) = driver.fill(slots=8)
    assert (third["kind"], third["index"], third["trial"]["job"]["seed"]) == (CANDIDATE, 2, 0)

    driver.end(first[4])  # a one-shot search ends while candidates run: its retrain starts at once
    (retrain,) = driver.fill(slots=8)
    assert retrain["kind"] == RETRAIN and retrain["trial"]["run_id"] == first[4]["trial"]["run_id"]
    assert retrain["trial"]["architecture"] is not None
    assert driver.suggest() is None

    for config in (first[1], third):  # seed 0's candidates have all ended: APET selects, then retrains
        driver.end(config)
    (apet_retrain,) = driver.fill(slots=8)
    assert apet_retrain["kind"] == RETRAIN and apet_retrain["trial"]["job"] == first[0]["trial"]["job"]
    found = driver.searcher.recorder.found[apet_retrain["trial"]["run_id"]]
    assert found.info["candidates"] == 3 and len(found.info["placements"]) == 3 and found.search_s == 10.0

    while driver.running:  # the rest ends: the searcher says so once every job is finished
        driver.end(next(iter(driver.running.values())))
        driver.fill(slots=8)
    assert driver.suggest() == Searcher.FINISHED
    assert driver.searcher.recorder.progress() == (0, 6, 6)


def test_its_saved_state_resumes_the_running_trials_and_the_candidates(plan, tmp_path):
    driver = Driver(searcher_for(plan, tmp_path))
    first = driver.fill(slots=4)
    driver.end(first[0])  # one APET candidate of seed 0 has ended
    state = tmp_path / "searcher.pkl"
    driver.searcher.save(str(state))

    again = searcher_for(plan, tmp_path)  # a new driver (``--resume``)
    again.restore(str(state))
    assert again.live == driver.searcher.live  # the trials still running come back under their ids
    search = again.searches[first[0]["trial"]["run_id"]]
    assert list(search.results) == [0] and search.limiter.searcher._drawn == 2  # observations kept
    resumed = Driver(again)
    resumed.running = {t: c for t, c in driver.running.items()}
    resumed.n = driver.n
    nxt = resumed.suggest()
    assert (nxt["kind"], nxt["index"], nxt["trial"]["job"]["seed"]) == (CANDIDATE, 2, 0)  # the next draw, none redone
    assert nxt["candidate"] == search.limiter.searcher.space.to_tune_config(search.limiter.searcher.draw(2))


def test_a_black_box_search_that_failed_starts_over_on_resume(plan, tmp_path):
    driver = Driver(searcher_for(plan, tmp_path))
    first = driver.fill(slots=4)
    run_id = first[0]["trial"]["run_id"]
    driver.searcher.searches[run_id].failed = True  # as when its selection found nothing within the budget
    state = tmp_path / "searcher.pkl"
    driver.searcher.save(str(state))
    again = searcher_for(plan, tmp_path)
    again.restore(str(state))
    assert run_id not in again.searches and first[2]["trial"]["run_id"] in again.searches
