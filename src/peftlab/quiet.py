"""Keep the libraries' own logging and progress bars out of the way of peftlab's output: in the CLI, and in the
worker processes and Ray tasks that run a study's runs (their output would interleave with the driver's)."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # --report-to mlflow: its store's set-up lines
