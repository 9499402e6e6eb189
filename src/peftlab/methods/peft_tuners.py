"""Every other tuner HF peft ships, as a peftlab method generated from peft's own registry of config classes
(``peft.mapping.PEFT_TYPE_TO_CONFIG_MAPPING``): a tuner added to peft becomes a method here without code.

peftlab's own entries (lora, ia3, prompt, prefix: methods/peft_methods.py) are skipped. Defaults: the documented
size and learning rate for the tuners listed in ``TUNER_DEFAULTS`` (from peft's config docstrings and examples);
every other tuner runs on peft's own config defaults, with ``target_modules="all-linear"`` where the config takes
target modules. A tuner that cannot run in peftlab's loop (one model per run, one adapter, plain supervised
batches) is refused with its reason in ``TUNER_REFUSALS``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from peft.config import PromptLearningConfig
from peft import TaskType, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING as PEFT_LN_TARGETS
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from torch import nn

from peftlab.errors import MethodNotApplicable
from peftlab.methods.base import Method, settings_object
from peftlab.methods.peft_methods import PeftLibraryMethod, PromptLearningMethod, peft_task_type
from peftlab.methods.targets import attach_points, suffixes
from peftlab.models import head_module_names

# peft types peftlab already has as its own entries
OWN_PEFT_TYPES = frozenset({"LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING"})

# peft type -> (learning rate, settings): sizes and rates from peft's config docstrings and examples, checked on the
# default data (docs/METHODS.md, "Measured: the tuners on the default data"): LoHa, LoKr, BOFT and HRA did not leave
# the majority class at 5e-4 in 96 steps and reached 77.7, 73.0, 76.0 and 75.3 % at 5e-3, so their rate is 5e-3
TUNER_DEFAULTS: dict[str, tuple[float, dict[str, Any]]] = {
    "LOHA": (5e-3, {"r": 8, "alpha": 8}),
    "LOKR": (5e-3, {"r": 8, "alpha": 8}),
    "OFT": (5e-4, {"r": 0, "oft_block_size": 32}),
    "BOFT": (5e-3, {"boft_block_size": 4, "boft_n_butterfly_factor": 1}),
    "VERA": (5e-3, {"r": 256}),
    "FOURIERFT": (5e-2, {"n_frequency": 1000, "scaling": 150.0}),
    "ADALORA": (5e-4, {"init_r": 12, "target_r": 8, "total_step": 1000}),
    "LN_TUNING": (5e-3, {}),
    "HRA": (5e-3, {"r": 8}),
    "VBLORA": (5e-3, {"r": 4, "num_vectors": 256, "vector_length": 64}),
    "RANDLORA": (5e-4, {"r": 32}),
    "MISS": (5e-4, {"r": 64}),
    "C3A": (5e-2, {"block_size": 64}),
    "ROAD": (5e-4, {}),
    "P_TUNING": (1e-2, {"num_virtual_tokens": 20, "encoder_hidden_size": 128}),
    "SHIRA": (5e-4, {"r": 32}),
}

# peft types peftlab's loop cannot run, and why (one line each)
TUNER_REFUSALS: dict[str, str] = {
    "ADAPTION_PROMPT": "peft's adaption prompt patches Llama-style attention of a causal LM only, and needs "
    "adapter_layers and adapter_len for it",
    "XLORA": "X-LoRA mixes several already-trained LoRA adapters (adapters=...); peftlab trains one method per run",
    "POLY": "Poly routes between several LoRA skills by a task id in every batch; peftlab's batches carry none",
    "MULTITASK_PROMPT_TUNING": "multitask prompt tuning needs a task id in every batch; peftlab's batches carry none",
    "CPT": "CPT trains on context-formatted few-shot prompts (cpt_token_ids and masks) that peftlab's encoders "
    "do not build",
    "TRAINABLE_TOKENS": "trainable tokens needs the token ids to train (token_indices); set them in --method-config",
    "CARTRIDGE": "cartridges are a KV-cache prefix distilled from a corpus, not a supervised fine-tuning method",
}


# tuners peft cannot merge into the base weights, and why (every other non-prompt tuner merges: measured on tiny
# BERT and Llama, merged logits equal to the adapter's, tests/test_peft_tuners.py)
MERGE_BLOCKERS = {
    "LILY": "peft has no merge for Lily (its experts are mixed per input)",
    "SHADOW": "ShadowPEFT's update is a shadow network run beside the blocks, not a weight delta",
    "BEFT": "peft merges BEFT's bias update only into layers that have a bias (Llama's projections have none)",
}

# tuners with a setting that is the run's length in optimizer steps, given from the run (study/run.py build_run)
RUN_LENGTH_SETTINGS = {"ADALORA": "total_step"}

# tuners whose target_modules are not linear layers (whole blocks, layer norms): peft's own default stays
KEEPS_PEFT_TARGETS = frozenset({"SHADOW", "LN_TUNING"})


def _takes_linear_targets(peft_type: str, config_class: type) -> bool:
    return peft_type not in KEEPS_PEFT_TARGETS and "target_modules" in {f.name for f in dataclasses.fields(config_class)}


# tuners that only run on a decoder-only causal LM (peft's docs), and why
DECODER_ONLY = {"SHADOW": "ShadowPEFT rides a decoder-only model's block loop with a shadow network; this model's "
                "task is not causal LM"}


def block_norms(model: nn.Module) -> list[str] | str | None:
    """LN tuning's targets where peft has none for the model type: the normalisation layers (LayerNorm, RMSNorm)
    inside the blocks found from the module structure."""
    blocks = [b.path for b in attach_points(model, head_module_names(model)).blocks]
    norms = [name for name, module in model.named_modules()
             if "norm" in type(module).__name__.lower() and any(name.startswith(b + ".") for b in blocks)]
    if not norms:
        return None
    every = [name for name, module in model.named_modules() if "norm" in type(module).__name__.lower()]
    return suffixes(norms, every)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@dataclass
class PeftTunerMethod(PeftLibraryMethod):
    """A peft tuner generated from its config class; ``refused`` non-empty: it cannot run in peftlab's loop."""

    refused: str = ""
    peft_type: str = ""

    def default_settings(self, model: nn.Module) -> dict[str, Any]:
        settings = super().default_settings(model)
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if self.peft_type == "LN_TUNING" and model_type not in PEFT_LN_TARGETS and "target_modules" not in settings:
            norms = block_norms(model)
            if norms:
                settings["target_modules"] = norms
        return settings

    def run_settings(self, settings: dict[str, Any], total_steps: int, overrides: dict[str, Any]) -> dict[str, Any]:
        key = RUN_LENGTH_SETTINGS.get(self.peft_type)
        if key is None or key in overrides:
            return settings
        return {**settings, key: total_steps}

    def refusal(self, model: nn.Module, settings: dict[str, Any]) -> str | None:
        if self.refused:
            return self.refused
        if self.peft_type in DECODER_ONLY and settings.get("task_type", peft_task_type(model)) != TaskType.CAUSAL_LM:
            return DECODER_ONLY[self.peft_type]
        return super().refusal(model, settings)

    def after_step(self, model: nn.Module, step: int) -> None:
        """AdaLoRA reallocates its rank budget from the gradients' importance after every step (peft's
        ``update_and_allocate``, called between ``optimizer.step()`` and ``zero_grad()``, as peft's examples do)."""
        if self.peft_type == "ADALORA":
            model.base_model.update_and_allocate(step)

    def apply(self, model: nn.Module, settings: dict[str, Any]) -> nn.Module:
        """peft checks a tuner's sizes against each layer it wraps (a block size that does not divide the width,
        a rank above it): such a ValueError is the tuner not fitting this model, and the run is refused with it."""
        self.check_applies(model, settings)
        try:
            return get_peft_model(model, settings_object(self, settings))
        except ValueError as error:
            raise MethodNotApplicable(f"method '{self.name}' does not apply to this model: peft says "
                                      f"{_first_line(error)}") from None


@dataclass
class PeftPromptTunerMethod(PromptLearningMethod):
    """A prompt-learning tuner of peft (p-tuning...) generated from its config class."""

    refused: str = ""

    def refusal(self, model: nn.Module, settings: dict[str, Any]) -> str | None:
        return self.refused or super().refusal(model, settings)


def tuner_method(peft_type: str, config_class: type) -> Method:
    """The method for one peft tuner type."""
    rate, settings = TUNER_DEFAULTS.get(peft_type, (5e-4, {}))
    # the kinds tests run them on (test_peft_tuners.py, test_regression.py); multiple choice and generation train
    # the same causal LM, so a tuner that trains one trains the other
    kinds = () if peft_type in TUNER_REFUSALS else ("multiple-choice", "generation") if peft_type in DECODER_ONLY \
        else ("classification", "regression", "multiple-choice", "generation")
    settings = dict(settings)
    name = peft_type.lower()
    refused = TUNER_REFUSALS.get(peft_type, "")
    if issubclass(config_class, PromptLearningConfig):
        return PeftPromptTunerMethod(
            name=name, summary=f"{config_class.__name__}: peft's {name} prompt learning (peft)",
            learning_rate=rate, settings_class=config_class, defaults=settings, refused=refused, task_kinds=kinds,
            merge_blocker=f"{name} adds learned virtual tokens, not a change of any weight",
        )
    if _takes_linear_targets(peft_type, config_class) and not refused:
        settings.setdefault("target_modules", "all-linear")
    return PeftTunerMethod(
        name=name, summary=f"{config_class.__name__}: peft's {name} tuner (peft)",
        learning_rate=rate, settings_class=config_class, defaults=settings, refused=refused,
        task_kinds=kinds, peft_type=peft_type, mergeable=not refused and peft_type not in MERGE_BLOCKERS,
        merge_blocker=refused or MERGE_BLOCKERS.get(peft_type, "it has no merge operation"),
    )


PEFT_TUNER_METHODS: tuple[Method, ...] = tuple(
    tuner_method(str(peft_type.value if hasattr(peft_type, "value") else peft_type), config_class)
    for peft_type, config_class in PEFT_TYPE_TO_CONFIG_MAPPING.items()
    if str(peft_type.value if hasattr(peft_type, "value") else peft_type) not in OWN_PEFT_TYPES
)
