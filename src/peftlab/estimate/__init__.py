"""estimate: what full fine-tuning and each PEFT method cost at a target scale, from the model's config alone.

An analytic model (docs/ESTIMATE.md): parameters, memory (weights, gradients, optimizer state, activations),
FLOPs per token, step time on a GPU, checkpoint size, and the GPUs a run fits on.
"""

from peftlab.estimate.architecture import ModelFacts, facts_from_config
from peftlab.estimate.estimate import estimate, estimate_method, estimate_run
from peftlab.estimate.settings import EstimateSettings
from peftlab.estimate.gpus import GPUS, get_gpu
from peftlab.estimate.load import load_facts
from peftlab.estimate.plans import ESTIMATE_VARIANTS, is_modelled, modelled_methods

__all__ = ["ESTIMATE_VARIANTS", "GPUS", "EstimateSettings", "ModelFacts", "estimate", "estimate_method",
           "estimate_run", "facts_from_config", "get_gpu", "is_modelled", "load_facts", "modelled_methods"]
