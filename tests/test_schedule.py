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


# ---- --lr-grid: one retrain trial per learning rate, the best validation picks --------------------
GRID = (1e-4, 3e-4, 1e-3)
GRID_VALIDATION = {1e-4: 70.0, 3e-4: 80.0, 1e-3: 75.0}  # what each rate's retrain "scored" on validation


@pytest.fixture(scope="module")
def grid_plan():
    return make_plan(build_parser().parse_args(
        ["run", "--methods", "lora", "--seeds", "0", "--backbone", "tiny-bert", "--tasks", "demo/rotten_tomatoes",
         "--lr-grid", "1e-3,1e-4,3e-4"]))


def end_grid_trial(searcher: PlanSearcher, trial_id: str, config: dict, folder, killed: bool = False) -> None:
    """What Ray Tune and the run's callback do as a grid's retrain ends: a result at the trial's rate
    (its validation from GRID_VALIDATION, its test score 100 minus it) and a checkpoint whose predictions
    file names the rate, handed to the Recorder (``killed``: the run died before it could do more than
    keep the trial)."""
    from suite.learning_rate import LrTrials
    from suite.outcomes import RetrainResult
    from suite.rundir import CHECKPOINT_FILES, PREDICTIONS

    lr = config["trial"]["harness"]["lr"]
    assert lr == config["lr"]
    recorder = searcher.recorder
    retrain = RetrainResult(validation={"accuracy": GRID_VALIDATION[lr]}, test={"accuracy": 100 - GRID_VALIDATION[lr]},
                            best_step=2, steps=4, train_time_s=1.0, eval_time_s=0.1, peak_memory_mb=1.0, peft_params=10,
                            head_params=2, backbone_params=searcher.plan.backbone_params)
    checkpoint = folder / f"checkpoint-{lr}"
    checkpoint.mkdir(exist_ok=True)
    (checkpoint / CHECKPOINT_FILES[PREDICTIONS]).write_text(f"predictions at {lr}")
    searcher.on_trial_complete(trial_id)
    if killed:
        LrTrials(recorder.run, config["trial"]["run_id"]).save(retrain, lr, checkpoint)
    else:
        recorder.save_lr_trial(recorder.jobs[config["trial"]["run_id"]], retrain, lr, checkpoint)


def numbers(value) -> list:
    """Every number in a JSON value."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_a_grid_retrains_each_architecture_once_per_learning_rate_and_the_best_validation_is_the_record(
        grid_plan, tmp_path):
    from suite.rundir import load_records

    out = tmp_path / "run"
    searcher = searcher_for(grid_plan, out)
    (job,) = grid_plan.jobs()
    assert grid_plan.lr_grid == GRID
    configs = [searcher.suggest(f"t{i}") for i in range(3)]
    assert [(c["kind"], c["lr"], c["trial"]["harness"]["lr"]) for c in configs] == [(RETRAIN, lr, lr) for lr in GRID]
    assert searcher.suggest("t3") is None  # every rate runs: nothing else is ready
    for i, config in enumerate(configs):
        end_grid_trial(searcher, f"t{i}", config, tmp_path)
    assert searcher.suggest("t4") == Searcher.FINISHED
    (record,) = load_records(out)  # one record for the job, at the best validation's rate
    grid = record["retrain"]["lr_grid"]
    scores = {t["lr"]: t["validation"]["accuracy"] for t in grid["trials"]}
    assert scores == GRID_VALIDATION and grid["values"] == list(GRID)
    assert grid["chosen"] == record["retrain"]["lr"] == max(scores, key=scores.get) == 3e-4
    assert record["metrics"]["validation"]["accuracy"] == 80.0 and record["metrics"]["test"]["accuracy"] == 20.0
    others = {100 - v for lr, v in GRID_VALIDATION.items() if lr != 3e-4}  # the other rates' test scores
    assert all("test" not in t for t in grid["trials"]) and not others & set(numbers(record))
    assert (out / record["files"]["predictions"]["path"]).read_text() == "predictions at 0.0003"  # the chosen's
    assert not (out / "lr_trials").exists()  # the others' files are gone once the record is written


def test_a_resumed_grid_keeps_the_rates_that_ended_and_records_the_job_once(grid_plan, tmp_path):
    from suite.rundir import load_records

    out = tmp_path / "run"
    searcher = searcher_for(grid_plan, out)
    first = [searcher.suggest(f"t{i}") for i in range(3)]
    end_grid_trial(searcher, "t0", first[0], tmp_path)  # 1e-4 ended, then the run was killed
    state = tmp_path / "searcher.pkl"
    searcher.save(str(state))

    restored = searcher_for(grid_plan, out)  # --resume: the saved state says 3e-4 and 1e-3 still run
    restored.restore(str(state))
    assert sorted(restored.lrs.values()) == [3e-4, 1e-3] and restored.suggest("t3") is None
    fresh = searcher_for(grid_plan, out)  # killed before Tune saved them: those two start again, 1e-4 does not
    again = [fresh.suggest(f"r{i}") for i in range(3)]
    assert [c["lr"] for c in again[:2]] == [3e-4, 1e-3] and again[2] is None
    for i, config in enumerate(again[:2]):  # both end, and the run dies before the record is written
        end_grid_trial(fresh, f"r{i}", config, tmp_path, killed=True)
    assert not (out / "records").exists()

    last = searcher_for(grid_plan, out)  # the next --resume writes it from what every rate left
    assert last.suggest("s0") == Searcher.FINISHED
    (record,) = load_records(out)
    grid = record["retrain"]["lr_grid"]
    assert {t["lr"]: t["validation"]["accuracy"] for t in grid["trials"]} == GRID_VALIDATION
    assert record["retrain"]["lr"] == 3e-4 and not (out / "lr_trials").exists()


def test_a_grid_trial_that_ends_again_is_not_kept_twice_and_a_failed_one_names_its_rate(grid_plan, tmp_path):
    import dataclasses
    from types import SimpleNamespace

    from suite.outcomes import RETRAIN_KEY, packed
    from suite.rundir import load_records
    from suite.writers import RetrainWriter

    out = tmp_path / "run"
    searcher = searcher_for(grid_plan, out)
    configs = [searcher.suggest(f"t{i}") for i in range(3)]
    end_grid_trial(searcher, "t0", configs[0], tmp_path)
    (job,) = grid_plan.jobs()
    kept = dict(searcher.recorder.lr_results(job))
    writer = RetrainWriter(searcher.recorder)
    again = dataclasses.replace(kept[1e-4], validation={"accuracy": 99.0})
    trial = SimpleNamespace(config=configs[0], last_result={RETRAIN_KEY: packed(again)}, num_failures=0,
                            checkpoint=None, error_file=None, get_error=lambda: "Boom: at 1e-3\n")
    writer.complete(trial)  # a restored trial that had ended after the last saved state ends again
    assert searcher.recorder.lr_results(job)[1e-4].validation == {"accuracy": 70.0}
    writer.error(SimpleNamespace(**{**vars(trial), "config": configs[2], "num_failures": 2}))
    (record,) = load_records(out)
    assert record["status"] == "failed" and record["error"].startswith("retrain at lr 1e-3 failed: Boom")
    assert record["retrain"]["attempts"] == 2


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
