"""The training setup an estimate is for: batch shape, precision, optimizer, memory techniques, GPU, software."""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.errors import ConfigError
from peftlab.estimate import memory as mem
from peftlab.estimate.architecture import ModelFacts
from peftlab.estimate.gpus import DEFAULT_GPU, get_gpu
from peftlab.estimate.params import TASKS
from peftlab.estimate.plans import RECIPES

ATTENTION_KERNELS = ("flash", "math")
ADAMW_KERNELS = ("fused", "foreach", "single")


@dataclass(frozen=True)
class EstimateSettings:
    """The training setup an estimate is for. Defaults: one GPU, bf16, AdamW, no gradient checkpointing."""

    batch_size: int = 8
    seq_len: int = 2048  # an encoder-decoder's encoder input
    target_len: int | None = None  # an encoder-decoder's decoder input (the labels' width); None: as long as seq_len
    dtype: str = "bf16"  # fp32, bf16, fp16 (pure 16-bit) or mixed (fp32 master weights, bf16 autocast)
    optimizer: str = "adamw"  # adamw, adamw8bit, sgd
    grad_checkpointing: bool = False
    recipe: str = "hf"  # the software modelled: hf (transformers + peft, as peftlab trains) or torchtune
    optimizer_in_backward: bool = False  # each gradient freed right after its update (torchtune's optimizer_in_bwd)
    gpu: str = DEFAULT_GPU
    utilisation: float = 0.4  # achieved share of the GPU's peak FLOP/s (model FLOPs utilisation)
    task: str | None = None  # causal-lm, classification or seq2seq-lm; None: causal-lm for decoders, seq2seq-lm for
    # encoder-decoders, classification for encoders
    device: str = "cuda"  # cuda or cpu: decides the attention kernel, dropout masks and AdamW's implementation
    padded: bool = False  # batches padded to a common length: an attention mask reaches the attention kernel
    attention: str | None = None  # flash or math; None: flash, except on CPU with attention dropout (math)
    adamw_kernel: str | None = None  # fused, foreach or single; None: fused on CUDA, single-tensor on CPU
    dropout: bool = True  # the model's dropout is active (training mode)

    def check(self) -> None:
        for name in ("batch_size", "seq_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)!r}")
        if self.target_len is not None and (not isinstance(self.target_len, int) or isinstance(self.target_len, bool)
                                            or self.target_len < 1):
            raise ConfigError(f"--target-len must be a positive integer, got {self.target_len!r}")
        mem.weight_dtype_bytes(self.dtype)
        if self.optimizer not in mem.OPTIMIZERS:
            raise ConfigError(f"unknown --optimizer '{self.optimizer}'; use one of {', '.join(mem.OPTIMIZERS)}")
        if not 0 < self.utilisation <= 1:
            raise ConfigError(f"--utilisation must be in (0, 1], got {self.utilisation}")
        if self.task is not None and self.task not in TASKS:
            raise ConfigError(f"unknown --task '{self.task}'; use one of {', '.join(TASKS)}")
        if self.attention is not None and self.attention not in ATTENTION_KERNELS:
            raise ConfigError(f"unknown attention kernel '{self.attention}'; use one of {', '.join(ATTENTION_KERNELS)}")
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown --recipe '{self.recipe}'; use one of {', '.join(RECIPES)}")
        if self.adamw_kernel not in (None, *ADAMW_KERNELS):
            raise ConfigError(f"unknown AdamW kernel '{self.adamw_kernel}'; use one of {', '.join(ADAMW_KERNELS)}")
        if self.device not in ("cuda", "cpu"):
            raise ConfigError(f"unknown device '{self.device}'; use cuda or cpu")
        get_gpu(self.gpu)

    def task_for(self, facts: ModelFacts) -> str:
        defaults = {"decoder": "causal-lm", "encoder-decoder": "seq2seq-lm"}
        task = self.task or defaults.get(facts.stack, "classification")
        if task == "causal-lm" and facts.stack == "encoder":
            raise ConfigError(f"model type '{facts.model_type}' is an encoder: estimate it with --task classification")
        if task == "causal-lm" and facts.stack == "encoder-decoder":
            raise ConfigError(f"model type '{facts.model_type}' is an encoder-decoder: estimate it with --task "
                              "seq2seq-lm or classification")
        if task == "seq2seq-lm" and facts.stack != "encoder-decoder":
            raise ConfigError(f"model type '{facts.model_type}' is not an encoder-decoder: estimate it with --task "
                              f"{defaults.get(facts.stack, 'classification')} or classification")
        return task

    @property
    def decoder_len(self) -> int:
        """Positions of an encoder-decoder's decoder input: the target's length, else the input's."""
        return self.seq_len if self.target_len is None else self.target_len

    def attention_for(self, facts: ModelFacts) -> str:
        if self.attention:
            return self.attention
        if facts.attention_impl == "eager":  # attention as plain matrix products (T5, DeBERTa): the math kernel's
            return "math"
        return "math" if self.device == "cpu" and self.dropout and facts.attention_dropout > 0 else "flash"

    def optimizer_implementation(self) -> str:
        """torch's AdamW runs single-tensor on CPU and foreach by default on CUDA; a GPU estimate assumes the fused
        kernel (torchtune's and the HF Trainer's choice) unless told otherwise."""
        return self.adamw_kernel or ("single" if self.device == "cpu" else "fused")
