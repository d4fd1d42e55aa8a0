"""The error of a model that cannot be loaded; its own module so that every loader (``loading``, ``assembled``)
can raise it without importing another."""

from __future__ import annotations

from ..base import UserError


class ModelLoadError(UserError):
    """A model could not be loaded; the message says why and what to do."""
