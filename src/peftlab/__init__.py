"""peftlab: compare full fine-tuning with parameter-efficient methods on your model and data.

Python API (everything the CLI does)::

    from peftlab import CompareConfig, compare
    results = compare(CompareConfig(model="minilm", data="rotten_tomatoes", methods=["full", "lora"]))
"""

from peftlab.errors import PeftlabError

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: `import peftlab` stays fast, and the CLI can quiet the libraries before they load.
    if name in {"CompareConfig", "compare"}:
        from peftlab import study

        return getattr(study, name)
    if name == "load_run":
        from peftlab.study.artifacts import load_run

        return load_run
    if name == "load_adapter":
        from peftlab.export.loading import load_adapter

        return load_adapter
    raise AttributeError(f"module 'peftlab' has no attribute {name!r}")


__all__ = ["CompareConfig", "PeftlabError", "compare", "load_adapter", "load_run"]
