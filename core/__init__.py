"""What every layer uses: the registry, strict configs, batch helpers, schedules and the search trace.

The layers import one way, ``suite -> methods -> spaces -> core`` (``tests/test_layers.py`` fails on
an upward import); nothing here imports a layer above it.
"""
