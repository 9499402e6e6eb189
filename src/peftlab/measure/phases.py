"""Where a run's wall time goes: named phases (build, train, test, save, robustness, ...) timed one after another.

    phases = Phases()
    with phases("train"):
        ...
    phases.seconds  # {"train": 12.3}
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
