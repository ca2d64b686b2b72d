"""Exceptions for bad input. Each message names the file, the fault and, where known, the fix.

The CLI turns these into one-line ``click.ClickException`` errors; library callers can catch
``MvtecRefError`` (or a subclass) and read ``path`` and ``problem`` separately.
"""

from __future__ import annotations


class MvtecRefError(Exception):
    """Base class: something about the user's input is wrong."""


class SampleError(MvtecRefError):
    """One sample (image or mask file) is unusable; a default build skips it and records why."""

    kind = "sample"

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem

    def __reduce__(self):  # a worker's error crosses the process pool whole (args are two strings)
        return type(self), (self.path, self.problem)


class MissingMaskError(SampleError):
    kind = "missing_mask"


class OrphanMaskError(SampleError):
    kind = "orphan_mask"


class CorruptImageError(SampleError):
    kind = "corrupt_file"


class MaskSizeError(SampleError):
    kind = "mask_size"


class MaskValueError(SampleError):
    kind = "mask_values"


class EmptyMaskError(SampleError):
    kind = "empty_mask"


class StrayFileError(SampleError):
    kind = "stray_file"


class UnreadablePathError(SampleError):
    """A folder that cannot be listed, a link loop, a name that cannot be recorded: skipped."""

    kind = "unreadable"


class DuplicateIdError(SampleError):
    """Two image files that would get one sample id (``000.png`` beside ``000.PNG``): skipped."""

    kind = "duplicate_id"


class BinarizedMasksError(SampleError):
    """Every mask of a category carries one value, so the values cannot name its defects."""

    kind = "binarized_masks"


class SourceLayoutError(MvtecRefError):
    """The root as a whole does not have the layout the source adapter reads."""


class DatasetError(MvtecRefError):
    """A dataset directory (output of ``build``) is missing, malformed or fails validation."""


class OutputError(MvtecRefError):
    """The output location cannot be written safely."""


class TrainingError(MvtecRefError):
    """A training run cannot start or go on (run folder in use, no checkpoint, loss diverged)."""
