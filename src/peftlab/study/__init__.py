"""Studies: the configuration, the inputs, one run and its probes, the driver and where runs execute.

The layers, bottom to top: :mod:`~peftlab.study.config` (what defines a study), :mod:`~peftlab.study.inputs`
(check and load what all runs share), :mod:`~peftlab.study.run` with :mod:`~peftlab.study.probes` (one run:
build, train, test, save, then the side measurements), :mod:`~peftlab.study.backends` (where runs execute) and
:mod:`~peftlab.study.driver` (plan, skip finished, execute, store). The whole comparison — runs, diagnosis,
report — is :func:`peftlab.recipe.compare`.
"""

from peftlab.study.config import CompareConfig
from peftlab.study.inputs import prepare_study

__all__ = ["CompareConfig", "prepare_study"]
