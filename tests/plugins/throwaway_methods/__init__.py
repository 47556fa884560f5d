"""A throw-away method package, written by following the README's "Add a method" section.

It lives outside the suite's packages (a user's own package would look the same) and is registered
by the two ``METHODS.register`` lines below when imported: the test session imports it (so the
one-shot and black-box catalogues run over its methods), and ``python -m suite run --plugin
throwaway_methods`` imports it in the driver and in every Ray trial.
"""

from methods import METHODS

METHODS.register("throwaway-greedy", "throwaway_methods.greedy:Greedy")
METHODS.register("throwaway-random", "throwaway_methods.random_search:RandomSearch")
