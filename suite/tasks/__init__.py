"""GLUE / SuperGLUE tasks and the offline demo task (see ``suite.tasks.base`` for what a task is).

API (implemented by the tasks issue):

* ``TASKS``: the registry of task names (``glue/rte``, ``superglue/cb``, ``demo/rotten_tomatoes``, ...).
* ``get_task(name) -> Task``
* ``expand_tasks(spec) -> list[str]``: ``"glue"``, ``"superglue"`` or ``"t1,t2"``.
* ``load_splits(task, seed, data_dir=None) -> suite.data.Splits``: the paper's split protocol.
"""
