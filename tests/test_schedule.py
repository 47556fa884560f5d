"""The plan as a Ray Tune searcher (``suite.schedule.PlanSearcher``), driven by hand as Ray Tune drives
it: which trial it suggests while others run, per-job limits, no barrier, its saved state."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from methods.base import PARAMS, RATIO, ROUND, SCORE
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


CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


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


# ---- each black-box job's candidates under its own ASHA (suite.rungs) ------------------------------
# two APET jobs under ASHA (best of 5, 4 at once), two optuna jobs at full fidelity, one-shot and manual jobs
ASHA_ARGV = ["run", "--methods", "lora,s3delta,apet,optuna", "--seeds", "0,1", "--space", "s2", "--backbone",
             "tiny-bert", "--tasks", "demo/rotten_tomatoes", "--budget-params", "1000", "--allow-step-cap",
             *[arg for option in ("apet.candidates=5", "apet.max_concurrent=4", "apet.scheduler=asha",
                                  "optuna.candidates=4", "optuna.max_concurrent=4", "optuna.population_size=2")
               for arg in ("--method-option", option)]]


@pytest.fixture(scope="module")
def asha_plan():
    return make_plan(build_parser().parse_args(ASHA_ARGV))


class Tune:
    """Ray Tune's side of the trial scheduler: each suggested trial added, its results and its end."""

    def __init__(self, driver: Driver):
        from suite.rungs import JobScheduler

        self.driver, self.scheduler, self.trials = driver, JobScheduler(driver.searcher), {}

    def add_running(self) -> None:
        from ray.tune.experiment import Trial

        for trial_id, config in self.driver.running.items():
            if trial_id not in self.trials:
                self.trials[trial_id] = SimpleNamespace(trial_id=trial_id, config=config, status=Trial.PENDING)
                self.scheduler.on_trial_add(None, self.trials[trial_id])

    def of(self, kind: str, method: str, seed: int) -> list[SimpleNamespace]:
        return [t for t in self.trials.values()
                if (t.config["kind"], t.config["trial"]["job"]["method"], t.config["trial"]["job"]["seed"])
                == (kind, method, seed)]

    def report(self, trial, score: float, round: int = 1) -> str:
        return self.scheduler.on_trial_result(None, trial, {SCORE: score, ROUND: round})

    def stop(self, trial, score: float, round: int = 1) -> None:
        """The trial ends at ``round`` of 3 (as a stopped candidate: its last result)."""
        search = self.driver.searcher.searches[trial.config["trial"]["run_id"]]
        arch = search.method.candidate(search.problem.space, trial.config["candidate"])
        params = search.problem.space.param_count(arch)
        result = {SCORE: score, ROUND: round, "step": round, "total": 3, RATIO: 0.001, PARAMS: params,
                  "time_total_s": 1.0 * round}
        self.scheduler.on_trial_complete(None, trial, result)  # Tune tells its scheduler, then its searcher
        del self.driver.running[trial.trial_id]
        self.driver.searcher.on_trial_complete(trial.trial_id, result)


def test_each_black_box_job_is_stopped_by_its_own_rungs_only(asha_plan, tmp_path):
    tune = Tune(Driver(searcher_for(asha_plan, tmp_path)))
    tune.driver.fill(slots=20)
    tune.add_running()
    apet0, apet1 = tune.of(CANDIDATE, "apet", 0), tune.of(CANDIDATE, "apet", 1)
    assert len(apet0) == len(apet1) == 4
    # at the first rung of its job, the first candidate goes on; later ones go on only in the top third
    assert [tune.report(t, s) for t, s in zip(apet0, (90, 10, 95, 5))] == [CONTINUE, STOP, CONTINUE, STOP]
    # the other APET job has its own rungs: its weak first candidate is the first there
    assert [tune.report(t, s) for t, s in zip(apet1, (20, 50))] == [CONTINUE, CONTINUE]
    # a full-fidelity job's candidates, one-shot searches and manual retrains are never stopped
    others = [*tune.of(CANDIDATE, "optuna", 0), *tune.of(SEARCH, "s3delta", 1), *tune.of(RETRAIN, "lora", 0)]
    assert len(others) == 6
    assert {tune.report(t, 0.0, round) for t in others for round in (1, 3, 9)} == {CONTINUE}


def test_a_stopped_candidate_ends_with_its_last_rung_in_the_record(asha_plan, tmp_path):
    tune = Tune(Driver(searcher_for(asha_plan, tmp_path)))
    tune.driver.fill(slots=20)
    tune.add_running()
    apet0 = tune.of(CANDIDATE, "apet", 0)
    run_id = apet0[0].config["trial"]["run_id"]
    assert tune.report(apet0[0], 90) == CONTINUE and tune.report(apet0[1], 10) == STOP
    tune.stop(apet0[1], 10.0)  # stopped at round 1: its searcher and select see its score there
    tune.driver.fill(slots=20)  # the job's fifth candidate
    tune.add_running()
    assert tune.report(tune.of(CANDIDATE, "apet", 0)[-1], 5) == STOP
    for trial, score in zip(tune.of(CANDIDATE, "apet", 0), (90, None, 80, 70, 5)):
        if trial.trial_id in tune.driver.running:
            tune.stop(trial, score, round=1 if score == 5 else 3)
    tune.driver.fill(slots=20)  # the job's candidates have all ended: APET selects
    rungs = tune.driver.searcher.recorder.found[run_id].info["rungs"]
    assert [(r["index"], r["round"], r["step"], r["steps"], r["score"], r["stopped_early"]) for r in rungs] == [
        (0, 3, 3, 3, 90, False), (1, 1, 1, 3, 10, True), (2, 3, 3, 3, 80, False),
        (3, 3, 3, 3, 70, False), (4, 1, 1, 3, 5, True)]
    info = tune.driver.searcher.recorder.found[run_id].info
    assert info["scheduler"] == "asha" and info["stopped_early"] == 2


def test_the_rungs_resume_with_the_searcher(asha_plan, tmp_path):
    tune = Tune(Driver(searcher_for(asha_plan, tmp_path)))
    tune.driver.fill(slots=20)
    tune.add_running()
    apet0 = tune.of(CANDIDATE, "apet", 0)
    assert [tune.report(t, s) for t, s in zip(apet0, (90, 10, 95, 96))] == [CONTINUE, STOP, CONTINUE, CONTINUE]
    tune.stop(apet0[1], 10.0)
    state = tmp_path / "searcher.pkl"
    tune.driver.searcher.save(str(state))

    again = searcher_for(asha_plan, tmp_path)  # --resume: the searcher restored, the trials added again
    again.restore(str(state))
    driver = Driver(again)
    driver.running, driver.n = dict(tune.driver.running), tune.driver.n
    resumed = Tune(driver)
    resumed.add_running()
    restarted = resumed.trials[apet0[0].trial_id]  # a running candidate trains again from the start:
    assert resumed.report(restarted, 1.0) == CONTINUE  # its rung-1 verdict was given before
    driver.fill(slots=20)
    resumed.add_running()
    fifth = resumed.of(CANDIDATE, "apet", 0)[-1]
    assert fifth.config["index"] == 4
    assert resumed.report(fifth, 50.0) == STOP  # judged against the rung's scores from before the resume
