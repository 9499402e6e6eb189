"""Peak memory of a block of work.

On CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak (bytes held by tensors).
On CPU: the peak of the process's resident set size (RSS) above its level when the block started, sampled
by a background thread every few milliseconds (torch has no CPU allocator statistics). Freed heap is
handed back to the OS first (glibc ``malloc_trim``) so that an earlier run's garbage does not hide this
run's growth.
"""

from __future__ import annotations

import ctypes
import gc
import threading

import psutil
import torch


def release_free_memory() -> None:
    """Collect garbage and return free heap pages to the OS, where the C library allows it."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Context manager: ``with PeakMemory(device) as peak: ...; peak.peak_bytes``."""

    def __init__(self, device: torch.device | str = "cpu", interval_seconds: float = 0.002):
        self.device = torch.device(device)
        self.interval_seconds = interval_seconds
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        release_free_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._process = psutil.Process()
        self._baseline = self._process.memory_info().rss
        self._max_rss = self._baseline
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max_rss = max(self._max_rss, self._process.memory_info().rss)
            self._stop.wait(self.interval_seconds)

    def so_far(self) -> int:
        """The peak measured up to now, inside the block (what a checkpoint keeps across a resume)."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return int(self._max_rss - self._baseline) if self._thread is not None else 0

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
            return
        self._stop.set()
        self._thread.join()
        self._max_rss = max(self._max_rss, self._process.memory_info().rss)
        self.peak_bytes = int(self._max_rss - self._baseline)
