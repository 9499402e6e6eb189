"""Errors a user can cause.

Every one of them is a :class:`PeftlabError`: the CLI prints its message in one line and exits with code 2.
Bugs are not wrapped; they still raise with a traceback.
"""


class PeftlabError(Exception):
    """A problem with the user's input, with a message that says what is wrong and what to do."""


class DataError(PeftlabError):
    """The dataset cannot be loaded or does not fit the task (missing columns, one class, empty text...)."""


class ModelError(PeftlabError):
    """The model cannot be found or loaded."""


class MethodError(PeftlabError):
    """Unknown method, a method that does not fit the model, or a bad per-method setting."""


class ConfigError(PeftlabError):
    """A bad option value or an unreadable configuration file."""


class TaskKindError(ConfigError):
    """An unknown task type (``--task``, or a results header's ``task.type``)."""


class MethodNotApplicable(MethodError):
    """A method that cannot apply to this model (no bias terms for BitFit, no key/value cache for prefix tuning, no
    attach points found): the run is recorded as ``refused`` with this reason, before it trains, and the other
    methods of the study run."""
