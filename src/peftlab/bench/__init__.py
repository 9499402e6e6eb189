"""`peftlab bench`: a suite of tasks × methods × seeds under one budget, run as resumable compares, summarised in
one suite table (docs/RESULTS.md)."""

from peftlab.bench.run import run_suite
from peftlab.bench.suite import BUILTIN_SUITES, Suite, SuiteTask, load_suite

__all__ = ["BUILTIN_SUITES", "Suite", "SuiteTask", "load_suite", "run_suite"]
