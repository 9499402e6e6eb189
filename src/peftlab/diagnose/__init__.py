"""Diagnose a (model, task) pair: vocabulary fit, domain shift, knowledge present, low-rank structure, task
shape; then the advisor's recommendation. `peftlab diagnose` and `compare` (its hook) both call this package."""

from peftlab.diagnose.diagnose import DiagnoseConfig, diagnose, diagnose_after_compare
from peftlab.diagnose.run import DiagnoseSettings, measure_signals
from peftlab.files import DIAGNOSIS_FILE

__all__ = ["DIAGNOSIS_FILE", "DiagnoseConfig", "DiagnoseSettings", "diagnose", "diagnose_after_compare",
           "measure_signals"]
