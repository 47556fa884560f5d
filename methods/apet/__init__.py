"""APET (Su et al., EMNLP 2023): random PEFT placements at a fixed budget.

``draw.py`` APET's draw, ``config.py`` options, ``searcher.py`` the Ray ``Searcher`` of draws,
``method.py`` the method registered as ``apet``.
"""
