"""A Hydra sweeper that asks Optuna for each trial's values and runs the trials through
Hydra's configured launcher (basic, submitit_local, submitit_slurm).

``python -m alexnet_lit.train hparams_search=lr ...`` searches with TPE (seeded); each trial is
a training run in the sweep folder's subfolder named by its trial number, scored by its
results.json: the best validation top-1 error, or chance's (1 - 1/classes) for a run that did
not learn (alexnet_lit.inspect.learning.learning_verdict). The study is stored in ``optuna.db``
(SQLite) in the sweep folder, so the same command resumes a search: finished trials stand,
and a trial an interruption left running runs again in its own folder, where the train
command continues from its checkpoints/last.ckpt. At the end the best trial is printed and
written to ``best.yaml`` in the sweep folder.

Current Optuna through its ask-and-tell interface, not the hydra-optuna-sweeper package:
its 1.3.0 pins optuna<3, whose SQLite storage fails with SQLAlchemy 2.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.alexnet_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    # key: Hydra's sweep syntax: interval(a, b), tag(log, interval(a, b)), choice(...), a,b,c, range(...)
    params: Dict[str, str] = field(default_factory=dict)
    n_trials: int = 20          # in the study, counting those of earlier, interrupted commands
    n_jobs: int = 1             # trials launched at once
    seed: int = 0               # TPE's
    n_startup_trials: int = 10  # random trials before TPE models the results
    storage: Optional[str] = None  # null: sqlite:///<sweep dir>/optuna.db
    study_name: str = "search"


ConfigStore.instance().store(group="hydra/sweeper", name="alexnet_optuna", node=OptunaSweeperConf,
                             provider="alexnet_lit")


class OptunaSweeper(Sweeper):
    """The plugin Hydra finds (``hydra/sweeper=alexnet_optuna``); the search is
    ``_search.OptunaSearch``, imported when one starts, so that without Optuna every other
    command runs as before."""

    def __init__(self, **settings: Any) -> None:
        try:
            from hydra_plugins.alexnet_optuna_sweeper._search import OptunaSearch
        except ModuleNotFoundError as err:
            raise ImportError(f"hparams_search needs Optuna ({err}): pip install -e '.[search]'") from err
        self.search = OptunaSearch(**settings)

    def setup(self, **context: Any) -> None:
        self.search.setup(**context)

    def sweep(self, arguments: List[str]) -> Any:
        return self.search.sweep(arguments)
