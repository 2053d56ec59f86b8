"""Optuna searches behind Hydra's sweeper interface: ``hydra/sweeper=alexnet_optuna``
(optuna_sweeper.py), chosen by conf/hparams_search/ (docs/searching.md). Hydra finds it in
the ``hydra_plugins`` namespace package; alexnet_lit.train also registers it by hand."""
