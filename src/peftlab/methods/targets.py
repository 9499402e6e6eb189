"""Where a method attaches in a model it has never seen: found from the module structure, not from a table per family.

IA3 rescales the attention keys and values and the feed-forward output's input; a bottleneck adapter goes after each
attention-output and feed-forward-output projection. Which modules those are differs by architecture
(``attention.output.dense`` in BERT, ``self_attn.o_proj`` in Llama, ``attn.c_proj`` in GPT-2, ``attention.out_lin``
in DistilBERT, ``SelfAttention.o`` in T5, ``attn.Wo`` in ModernBERT, ``attention.dense`` in ALBERT...). peft keeps a
hand-written mapping per model type for IA3 (used first where it has the type, see :mod:`peftlab.methods.peft_methods`);
for the rest, and for the adapter that peft does not have, this module reads the structure every transformer shares:

- the **blocks** are the elements of the outermost ``nn.ModuleList`` s that hold projections (``layer.3``,
  ``layers.3``, ``h.3``, ``block.3``; an encoder-decoder has two such lists);
- inside a block, a projection (``nn.Linear`` or transformers' ``Conv1D``) belongs to an **attention** sub-module when
  a component of its path names one (``attention``, ``self_attn``, ``attn``, ``SelfAttention``, ``EncDecAttention``,
  ``encoder_attn``, ``crossattention``...); each such sub-module is one attention (self- or cross-);
- an attention's **keys and values** are the projections named as keys/values (``k``, ``key``, ``k_proj``,
  ``k_lin``...), or else its fused query-key-value projection (``c_attn``, ``qkv_proj``, ``Wqkv``...: the one wider
  than the block); its **output** projection is the last, in definition order, of the others that map back to the
  block's width and are not named as queries;
- the **feed-forward output** is the block's last projection outside attention that maps back to the block's width.

Definition order is what transformers modules follow (they are written in execution order); a model where these
rules find nothing gets a clear refusal from the method, which names ``target_modules`` as the way to say it by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

ATTENTION_PART = re.compile(r"att(ention|n)?($|_)|selfattention|encdecattention|crossattention|self_attn|encoder_attn",
                            re.IGNORECASE)
KEY_NAMES = re.compile(r"(k|key|k_proj|key_proj|k_lin|wk|to_k)", re.IGNORECASE)
VALUE_NAMES = re.compile(r"(v|value|v_proj|value_proj|v_lin|wv|to_v)", re.IGNORECASE)
QUERY_NAMES = re.compile(r"(q|query|q_proj|query_proj|q_lin|wq|to_q)", re.IGNORECASE)


def projection_shape(module: nn.Module) -> tuple[int, int] | None:
    """(in_features, out_features) of a linear projection (``nn.Linear``, transformers' ``Conv1D``, a quantized or
    peft-wrapped linear exposing both), else None."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
        rows, cols = module.weight.shape  # GPT-2's Conv1D stores (in, out)
        return int(rows), int(cols)
    ins, outs = getattr(module, "in_features", None), getattr(module, "out_features", None)
    if isinstance(ins, int) and isinstance(outs, int) and not list(module.children()):
        return ins, outs
    return None


@dataclass(frozen=True)
class Attention:
    """One attention sub-module of a block: its path and the full names of its projections."""

    path: str
    projections: tuple[str, ...]
    output: str | None
    keys_values: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    path: str
    width: int
    attentions: tuple[Attention, ...]
    ffn_output: str | None


@dataclass(frozen=True)
class AttachPoints:
    """The projections methods attach to, by full module name, in model order."""

    blocks: tuple[Block, ...] = field(default_factory=tuple)

    @property
    def attention_outputs(self) -> list[str]:
        return [a.output for b in self.blocks for a in b.attentions if a.output]

    @property
    def ffn_outputs(self) -> list[str]:
        return [b.ffn_output for b in self.blocks if b.ffn_output]

    @property
    def keys_values(self) -> list[str]:
        return [name for b in self.blocks for a in b.attentions for name in a.keys_values]

    @property
    def sublayer_outputs(self) -> list[str]:
        """Every attention output and feed-forward output: where Houlsby adapters go."""
        return sorted(set(self.attention_outputs) | set(self.ffn_outputs), key=self._order)

    def _order(self, name: str) -> int:
        names = [n for b in self.blocks for a in b.attentions for n in a.projections]
        names += [b.ffn_output for b in self.blocks if b.ffn_output]
        return names.index(name) if name in names else len(names)


def _block_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """The outermost ModuleLists whose elements hold projections."""
    found: list[tuple[str, nn.ModuleList]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or not len(module):
            continue
        if any(name.startswith(outer + ".") for outer, _ in found):
            continue
        if any(projection_shape(m) for m in module.modules()):
            found.append((name, module))
    return found


def _attention_path(relative: str) -> str | None:
    """The path (inside a block) of the attention sub-module a projection sits in, or None."""
    parts = relative.split(".")[:-1]
    for index, part in enumerate(parts):
        if ATTENTION_PART.search(part):
            return ".".join(parts[: index + 1])
    return None


def _block(path: str, block: nn.Module) -> Block | None:
    projections = [(f"{path}.{name}", name, shape) for name, module in block.named_modules()
                   if name and (shape := projection_shape(module)) is not None]
    if not projections:
        return None
    groups: dict[str, list[tuple[str, str, tuple[int, int]]]] = {}
    outside = []
    for entry in projections:
        where = _attention_path(entry[1])
        (groups.setdefault(where, []) if where is not None else outside).append(entry)
    width = _block_width(groups, outside)
    attentions = []
    for where, members in groups.items():
        leaf = {full: rel.rsplit(".", 1)[-1] for full, rel, _ in members}
        named_kv = [full for full, _, _ in members if KEY_NAMES.fullmatch(leaf[full]) or VALUE_NAMES.fullmatch(leaf[full])]
        outputs = [full for full, _, (_, out) in members
                   if out == width and full not in named_kv and not QUERY_NAMES.fullmatch(leaf[full])]
        output = outputs[-1] if outputs else None
        # no projection named as keys/values: a fused query-key-value projection, wider than the block
        kv = named_kv or [full for full, _, (_, out) in members if out > width and full != output][:1]
        attentions.append(Attention(f"{path}.{where}", tuple(full for full, _, _ in members), output, tuple(kv)))
    ffn = [full for full, _, (_, out) in outside if out == width]
    return Block(path, width, tuple(attentions), ffn[-1] if ffn else None)


def _block_width(groups: dict, outside: list) -> int:
    """The block's hidden width: what its attention projections take in (the residual stream's width)."""
    for members in groups.values():
        return members[0][2][0]
    return outside[0][2][0]


def attach_points(model: nn.Module, heads: list[str] | None = None) -> AttachPoints:
    """The blocks of `model` and their attach points (see the module docstring); modules under the names in
    `heads` (the task head) are left out."""
    heads = heads or []
    blocks = []
    for list_name, blocks_list in _block_lists(model):
        if any(list_name == h or list_name.startswith(h + ".") for h in heads):
            continue
        for index, element in enumerate(blocks_list):
            found = _block(f"{list_name}.{index}", element)
            if found is not None and found.attentions:
                blocks.append(found)
    return AttachPoints(tuple(blocks))


def suffixes(chosen: list[str], candidates: list[str]) -> list[str] | str:
    """peft ``target_modules`` selecting exactly `chosen` among `candidates`: the shortest name suffixes free of
    layer numbers (peft's list form, matched on a ``.`` boundary), e.g. ``["key", "value", "ffn_output"]``; where
    no such suffixes are exact (BERT's ``output.dense`` is also the end of ``attention.output.dense``), peft's string
    form, a regular expression over the paths inside the blocks: ``.*\\.\\d+\\.(?:output\\.dense)``."""
    chosen_set = set(chosen)

    def matches(name: str, suffix: str) -> bool:
        return name == suffix or name.endswith("." + suffix)

    result: list[str] = []
    for name in chosen:
        if any(matches(name, s) for s in result):
            continue
        parts = name.split(".")
        exact = None
        for size in range(1, len(parts) + 1):
            if parts[-size].isdigit():
                break
            suffix = ".".join(parts[-size:])
            if all(n in chosen_set for n in candidates if matches(n, suffix)):
                exact = suffix
                break
        if exact is None:
            return _block_pattern(chosen)
        result.append(exact)
    return result


def _block_pattern(chosen: list[str]) -> str:
    """A regular expression (peft full-matches it) over the paths after the block index."""
    inside = []
    for name in chosen:
        parts = name.split(".")
        index = max(i for i, part in enumerate(parts) if part.isdigit())
        inside.append(".".join(parts[index + 1:]))
    alternatives = "|".join(re.escape(path) for path in dict.fromkeys(inside))
    return rf".*\.\d+\.(?:{alternatives})$"


def projection_roles(model: nn.Module, heads: list[str] | None = None) -> dict[str, str]:
    """{projection name: its role in its block}: ``query``, ``key``, ``value``, ``attention_in`` (a fused
    query-key-value projection), ``attention_output``, ``ffn_in``, ``ffn_out``; projections outside the blocks
    are left out."""
    roles: dict[str, str] = {}
    for block in attach_points(model, heads).blocks:
        for attention in block.attentions:
            for name in attention.projections:
                leaf = name.rsplit(".", 1)[-1]
                if name == attention.output:
                    roles[name] = "attention_output"
                elif KEY_NAMES.fullmatch(leaf):
                    roles[name] = "key"
                elif VALUE_NAMES.fullmatch(leaf):
                    roles[name] = "value"
                elif name in attention.keys_values:
                    roles[name] = "attention_in"
                else:
                    roles[name] = "query"
        inside = {name for attention in block.attentions for name in attention.projections}
        for name, module in model.get_submodule(block.path).named_modules():
            full = f"{block.path}.{name}"
            if name and full not in inside and projection_shape(module) is not None:
                roles[full] = "ffn_out" if full == block.ffn_output else "ffn_in"
    return roles


def projection_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if name and projection_shape(module) is not None]
