"""Studies: which runs, in what order, where, and what they write."""

from peftlab.study.compare import CompareConfig, compare, prepare_study

__all__ = ["CompareConfig", "compare", "prepare_study"]
