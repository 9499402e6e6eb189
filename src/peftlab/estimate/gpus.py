"""Common training GPUs: memory and peak dense matrix throughput (vendor datasheets, without sparsity).

``memory_gib`` is the memory the driver reports as usable (``nvidia-smi`` total, rounded down to 0.1 GiB); a
model "fits" when its estimated peak leaves :data:`HEADROOM` of it free for the CUDA context, kernel workspaces
and the caching allocator's fragmentation.

``tflops_16bit`` is the dense bf16/fp16 tensor-core peak (fp32 accumulate); ``tflops_fp32`` the fp32 peak without
TF32 (PyTorch's default for matrix products). Step time = FLOPs / (peak x utilisation).
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.errors import ConfigError

GIB = 1024**3
HEADROOM = 0.10  # share of a GPU's memory an estimate leaves free


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float
    tflops_16bit: float
    tflops_fp32: float

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)

    def fits(self, peak_bytes: int) -> bool:
        return peak_bytes <= (1 - HEADROOM) * self.memory_bytes

    def peak_flops(self, dtype: str) -> float:
        return (self.tflops_fp32 if dtype == "fp32" else self.tflops_16bit) * 1e12


GPUS: dict[str, Gpu] = {gpu.name: gpu for gpu in (
    Gpu("RTX4090-24GB", 23.9, 165.2, 82.6),  # Ada AD102: 165.2 TFLOP/s bf16 dense with fp32 accumulate
    Gpu("L4-24GB", 22.4, 121.0, 30.3),
    Gpu("A100-40GB", 39.5, 312.0, 19.5),
    Gpu("A6000-48GB", 47.9, 154.8, 38.7),  # RTX A6000 (Ampere)
    Gpu("L40S-48GB", 44.9, 362.1, 91.6),
    Gpu("A100-80GB", 79.1, 312.0, 19.5),
    Gpu("H100-80GB", 79.1, 989.4, 66.9),  # H100 SXM5
    Gpu("H200-141GB", 140.3, 989.4, 66.9),
)}

DEFAULT_GPU = "H100-80GB"


def get_gpu(name: str) -> Gpu:
    """A GPU by name, case-insensitively; a unique prefix is enough (`h100`, `4090` does not match: `rtx4090`)."""
    key = name.strip().lower()
    exact = [gpu for gpu in GPUS.values() if gpu.name.lower() == key]
    matches = exact or [gpu for gpu in GPUS.values() if gpu.name.lower().startswith(key)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(GPUS)
    if not matches:
        raise ConfigError(f"unknown --gpu '{name}'; known GPUs: {known}")
    raise ConfigError(f"--gpu '{name}' is ambiguous ({', '.join(g.name for g in matches)}); known GPUs: {known}")


def fits_on(peak_bytes: int) -> list[str]:
    return [gpu.name for gpu in GPUS.values() if gpu.fits(peak_bytes)]
