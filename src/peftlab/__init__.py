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

from peftlab.errors import PeftlabError

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: `import peftlab` (and `peftlab.errors`) stays light; the API's names load torch and the libraries.
    if name == "compare":
        from peftlab.recipe import compare

        return compare
    if name == "CompareConfig":
        from peftlab.study.config import CompareConfig

        return CompareConfig
    if name == "load_run":
        from peftlab.study.artifacts import load_run

        return load_run
    if name in ("Results", "load_study"):
        from peftlab.report import results

        return getattr(results, name)
    if name == "load_adapter":
        from peftlab.export.loading import load_adapter

        return load_adapter
    raise AttributeError(f"module 'peftlab' has no attribute {name!r}")


__all__ = ["CompareConfig", "PeftlabError", "Results", "compare", "load_adapter", "load_run", "load_study"]
