"""Export: a study's chosen method in the forms serving stacks read (docs/EXPORT.md).

- :func:`export` (``peftlab export``): the adapter in the HF peft format (or the project's own format for
  `adapter`, `head`, `bitfit`), the merged model, compressed adapters;
- :func:`load_adapter`: load any exported adapter folder;
- :func:`mixed_batch_check`: several LoRA adapters on one base, one mixed batch.
"""

from peftlab.export.exporter import ExportConfig, export
from peftlab.export.loading import load_adapter
from peftlab.export.serve import load_adapters_on_one_base, mixed_batch_check

__all__ = ["ExportConfig", "export", "load_adapter", "load_adapters_on_one_base", "mixed_batch_check"]
