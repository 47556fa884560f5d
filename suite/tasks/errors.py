"""Errors of task data loading: each is one message naming the bad file, line or source and the fix."""

from __future__ import annotations


class TaskDataError(ValueError):
    """Task data that cannot be loaded or is malformed."""


class MissingDataFile(TaskDataError, FileNotFoundError):
    """An original release file is not where the local layout expects it."""


class HubUnavailable(TaskDataError, ConnectionError):
    """The HuggingFace hub cannot be reached (or the dataset is not cached) and no data dir was given."""
