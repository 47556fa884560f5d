"""A black-box baseline: Ray Tune's ``OptunaSearch`` (NSGA-II or TPE) over the space, budget as a constraint.

``config.py`` options, ``method.py`` the method registered as ``optuna``.
"""
