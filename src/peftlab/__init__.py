"""peftlab: compare full fine-tuning with parameter-efficient methods on your model and data.

Python API (everything the CLI does)::

    from peftlab import CompareConfig, compare
    results = compare(CompareConfig(model="minilm", data="rotten_tomatoes", methods=["full", "lora"]))
    results.table()            # a pandas DataFrame, one row per run
    results.plot("pareto")     # a matplotlib Figure
    results = load_study("runs/rt")  # a finished or running study folder, read back

Layers, bottom to top (a module imports only from layers below its own; ``tests/test_layers.py`` checks it):
``errors``, ``files`` → ``tasks``, ``models``, ``methods`` → ``train``, ``evaluate``, ``measure``, ``estimate`` →
``study`` → ``diagnose``, ``advise``, ``report``, ``export`` → ``recipe``, ``bench`` → ``cli``.
"""

import importlib

from peftlab.errors import PeftlabError

__version__ = "0.1.0"


# The API's names and the module each lives in: loaded on first use, so that `import peftlab` (and peftlab.errors)
# stays light while the API's modules load torch and the libraries.
_LAZY = {"compare": "peftlab.recipe", "CompareConfig": "peftlab.study.config", "load_run": "peftlab.study.artifacts",
         "Results": "peftlab.report.results", "load_study": "peftlab.report.results",
         "load_adapter": "peftlab.export.loading"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'peftlab' has no attribute {name!r}")


__all__ = ["CompareConfig", "PeftlabError", "Results", "compare", "load_adapter", "load_run", "load_study"]
