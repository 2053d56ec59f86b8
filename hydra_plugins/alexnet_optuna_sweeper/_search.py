"""The search behind alexnet_optuna_sweeper.OptunaSweeper, imported when a search starts
(Optuna is an optional extra; Hydra's plugin scan skips modules named ``_*``)."""
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from alexnet_lit.checkpointing.run_folder import RunFolderLocked, holder
from alexnet_lit.results import Results, read_results
from alexnet_lit.writing import replace_text

log = logging.getLogger(__name__)
DONE = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def objective(results: Results, classes: int) -> float:
    """A trial's score from its results.json: the best validation top-1 error of a run that
    learned, chance's for one that did not (or never validated)."""
    learned = results.learning is not None and results.learning.verdict.startswith("learns")
    best = results.best_val_top1_err
    return best if learned and best is not None else 1 - 1 / classes


def within(value, distribution) -> bool:
    """Whether ``value`` is one this search could have drawn from ``distribution``."""
    if isinstance(distribution, CategoricalDistribution):
        return any(type(value) is type(choice) and value == choice for choice in distribution.choices)
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and distribution.low <= value <= distribution.high)


class OptunaSearch(Sweeper):
    """The search of the settings of OptunaSweeperConf (optuna_sweeper.py)."""

    def __init__(self, params: Dict[str, str], n_trials: int, n_jobs: int, seed: int,
                 n_startup_trials: int, storage: Optional[str], study_name: str) -> None:
        self.params, self.n_trials, self.n_jobs, self.seed = dict(params), n_trials, n_jobs, seed
        self.n_startup_trials, self.storage, self.study_name = n_startup_trials, storage, study_name

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> dict:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial's line is ours, with its folder
        fixed, space = self.search_space(arguments)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        replace_text(self.sweep_dir / "multirun.yaml", OmegaConf.to_yaml(self.config))
        study = self.open_study(fixed)
        running = []
        for trial in study.get_trials(deepcopy=False, states=[TrialState.RUNNING]):
            self.check_trial(trial, space)
            owner = holder(self.sweep_dir / str(trial.number))
            if owner:  # another command of this search runs it now: its own to finish and tell
                log.info(f"trial {trial.number} is running in another job ({owner}): left to it")
            else:
                running.append(trial)
        for trial in running:
            resumed = (self.sweep_dir / str(trial.number) / "checkpoints" / "last.ckpt").is_file()
            log.info(f"trial {trial.number} was left running by an interrupted search: running it again in its "
                     f"folder, {'from its checkpoints/last.ckpt' if resumed else 'from the start (no last.ckpt)'}")
        self.run(study, fixed, {t.number: t.params for t in running})
        while (left := self.n_trials - len(study.get_trials(deepcopy=False, states=DONE))) > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, left))]
            self.run(study, fixed, {t.number: t.params for t in trials})
        return self.report(study, fixed)

    def search_space(self, arguments: Sequence[str]) -> tuple[list[str], dict]:
        """The overrides every trial gets, and the distributions Optuna draws the others from:
        ``hydra.sweeper.params`` then the command line's overrides (which win)."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        lines = [f"{key}={value}" for key, value in self.params.items()] + list(arguments)
        fixed, space = {}, {}
        for override in parser.parse_overrides(lines):
            key = override.get_key_element()
            fixed.pop(key, None)
            space.pop(key, None)
            if not override.is_sweep_override():
                fixed[key] = override.input_line
            elif override.is_interval_sweep():
                interval = override.value()
                space[key] = FloatDistribution(interval.start, interval.end, log="log" in interval.tags)
            else:  # choice(...), a,b,c, range(...)
                space[key] = CategoricalDistribution(list(override.sweep_string_iterator()))
        return list(fixed.values()), space

    def check_trial(self, trial: optuna.trial.FrozenTrial, space: dict) -> None:
        """A stored trial is data: run again only where each of its params is one of this
        search's keys with a value inside that key's distribution, and none is missing."""
        where = f"{self.sweep_dir / 'optuna.db'}: trial {trial.number}"
        for key, value in trial.params.items():
            if key not in space:
                raise ValueError(f"{where} has the param {key!r}, not one of this search's "
                                 f"({', '.join(sorted(space))}): refused, nothing run")
            if not within(value, space[key]):
                raise ValueError(f"{where} has {key}={value!r}, outside this search's {space[key]}: refused, nothing run")
        missing = sorted(set(space) - set(trial.params))
        if missing:
            raise ValueError(f"{where} has no value for {missing[0]!r}: refused, nothing run")

    def open_study(self, fixed: list[str]) -> optuna.Study:
        """The sweep folder's study, created or resumed; one of other fixed overrides (another
        search in the same folder) is refused."""
        storage = self.storage or f"sqlite:///{(self.sweep_dir / 'optuna.db').resolve()}"
        study = optuna.create_study(storage=storage, study_name=self.study_name, direction="minimize",
                                    load_if_exists=True)
        searched = study.user_attrs.get("fixed_overrides")
        if searched is None:
            study.set_user_attr("fixed_overrides", sorted(fixed))
        elif searched != sorted(fixed):
            raise ValueError(f"{storage} holds study {self.study_name!r} of the overrides {searched}, not "
                             f"{sorted(fixed)}: give this search another hydra.sweep.dir")
        # a resumed search draws on from where it stopped, not the first trials' numbers again
        study.sampler = optuna.samplers.TPESampler(seed=self.seed + len(study.trials),
                                                   n_startup_trials=self.n_startup_trials)
        return study

    def run(self, study: optuna.Study, fixed: list[str], trials: Dict[int, dict]) -> None:
        """Launch ``trials`` (number: params) at once, each in the folder named by its number,
        and tell Optuna each one's score, or that it failed."""
        if not trials:
            return
        batch = [[*fixed, *(f"{key}={value}" for key, value in params.items()), f"hydra.sweep.subdir={number}"]
                 for number, params in trials.items()]
        try:
            self.validate_batch_is_legal(batch)  # composes each trial's config
        except Exception:
            for number in trials:
                study.tell(number, state=TrialState.FAIL)
            raise
        returns = self.launcher.launch(batch, initial_job_idx=min(trials))
        for (number, params), job in zip(trials.items(), returns):
            self.tell(study, number, params, job)

    def tell(self, study: optuna.Study, number: int, params: dict, job: JobReturn) -> None:
        try:
            job.return_value  # raises the job's error
        except RunFolderLocked as err:  # another command of this search holds the trial's folder
            log.info(f"trial {number}: {err}; left to that job")
            return
        except Exception as err:  # noqa: BLE001 (any error of a trial's run fails that trial only)
            log.warning(f"trial {number} failed ({type(err).__name__}: {err}): marked failed")
            self.told(study, number, state=TrialState.FAIL)
            return
        folder = Path(job.hydra_cfg.hydra.runtime.output_dir)
        results = read_results(folder / "results.json")
        value = objective(results, job.cfg.data.num_classes)
        if not self.told(study, number, value):
            return
        verdict = "no verdict" if results.learning is None else results.learning.verdict
        log.info(f"trial {number} ({', '.join(f'{k}={v}' for k, v in params.items())}): {value:.4f} "
                 f"({verdict}) in {folder}")

    @staticmethod
    def told(study: optuna.Study, number: int, value: float | None = None, state: TrialState | None = None) -> bool:
        """Tell Optuna a trial's end, unless another command of the search has told it already."""
        if next(t for t in study.get_trials(deepcopy=False) if t.number == number).state.is_finished():
            log.info(f"trial {number} was told by another command of this search: kept as it told it")
            return False
        study.tell(number, value, state=state)
        return True

    def report(self, study: optuna.Study, fixed: list[str]) -> dict:
        """The best trial, printed and written to best.yaml in the sweep folder with the
        overrides that train it alone."""
        completed = [t for t in study.trials if t.value is not None]
        if not completed:
            raise RuntimeError(f"no trial of the search completed: see the trial folders in {self.sweep_dir}")
        best = min(completed, key=lambda t: t.value)
        train = [o for o in fixed if not o.startswith("hparams_search=")]  # that one makes a search
        summary = dict(trial=best.number, best_val_top1_err=best.value, params=best.params,
                       folder=str(self.sweep_dir / str(best.number)), trials=len(completed),
                       overrides=[*train, *(f"{k}={v}" for k, v in best.params.items())])
        replace_text(self.sweep_dir / "best.yaml", OmegaConf.to_yaml(OmegaConf.create(summary)))
        log.info(f"best of {len(completed)} trials: trial {best.number}, {best.value:.4f} with "
                 + ", ".join(f"{k}={v}" for k, v in best.params.items()) + f"; written to {self.sweep_dir / 'best.yaml'}")
        return summary
