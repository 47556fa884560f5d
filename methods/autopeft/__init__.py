"""AutoPEFT (Zhou et al., TACL 2024): multi-objective BO over PEFT architectures as a Ray Tune Searcher.

``config.py`` options, ``encoding.py`` the encodings searched (per layer, or AutoPEFT's shared sizes),
``bo.py`` one BO step (surrogate, qLogNEHVI, local search), ``searcher.py`` the Ray ``Searcher``,
``method.py`` the method registered as ``autopeft``. BoTorch is imported only when a search runs.
"""
