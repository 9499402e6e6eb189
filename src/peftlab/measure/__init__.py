"""Measurement: peak memory, sizes of tensors and files, phases of wall time."""

from peftlab.measure.memory import PeakMemory, release_free_memory
from peftlab.measure.phases import Phases
from peftlab.measure.sizes import directory_bytes, optimizer_state_bytes, parameter_counts

__all__ = ["PeakMemory", "Phases", "directory_bytes", "optimizer_state_bytes", "parameter_counts", "release_free_memory"]
