"""Config facts of well-known models, so that `peftlab estimate` works offline.

Each entry holds the values of the model's public ``config.json`` on the Hugging Face Hub (the repository named in
``hub_id``) that the estimate reads; nothing else. Names are matched case-insensitively, with or without the
organisation prefix (``meta-llama/Llama-3.1-8B``, ``Llama-3.1-8B`` and ``llama-3.1-8b`` are the same entry).
"""

from __future__ import annotations

from peftlab.estimate.architecture import ModelFacts

_LLAMA3_VOCAB = 128256

BUILTIN_MODELS: dict[str, tuple[str, ModelFacts]] = {
    # name: (hub_id, facts)
    "Llama-3.1-8B": ("meta-llama/Llama-3.1-8B", ModelFacts(
        name="Llama-3.1-8B", model_type="llama", family="decoder", hidden_size=4096, num_layers=32, num_heads=32,
        num_kv_heads=8, head_dim=128, intermediate_size=14336, vocab_size=_LLAMA3_VOCAB, max_positions=131072,
        tie_word_embeddings=False)),
    "Llama-3.1-70B": ("meta-llama/Llama-3.1-70B", ModelFacts(
        name="Llama-3.1-70B", model_type="llama", family="decoder", hidden_size=8192, num_layers=80, num_heads=64,
        num_kv_heads=8, head_dim=128, intermediate_size=28672, vocab_size=_LLAMA3_VOCAB, max_positions=131072,
        tie_word_embeddings=False)),
    "Llama-3.2-1B": ("meta-llama/Llama-3.2-1B", ModelFacts(
        name="Llama-3.2-1B", model_type="llama", family="decoder", hidden_size=2048, num_layers=16, num_heads=32,
        num_kv_heads=8, head_dim=64, intermediate_size=8192, vocab_size=_LLAMA3_VOCAB, max_positions=131072,
        tie_word_embeddings=True)),
    "Llama-3.2-3B": ("meta-llama/Llama-3.2-3B", ModelFacts(
        name="Llama-3.2-3B", model_type="llama", family="decoder", hidden_size=3072, num_layers=28, num_heads=24,
        num_kv_heads=8, head_dim=128, intermediate_size=8192, vocab_size=_LLAMA3_VOCAB, max_positions=131072,
        tie_word_embeddings=True)),
    "Mistral-7B-v0.1": ("mistralai/Mistral-7B-v0.1", ModelFacts(
        name="Mistral-7B-v0.1", model_type="mistral", family="decoder", hidden_size=4096, num_layers=32,
        num_heads=32, num_kv_heads=8, head_dim=128, intermediate_size=14336, vocab_size=32000,
        max_positions=32768, tie_word_embeddings=False)),
    "Qwen2.5-7B": ("Qwen/Qwen2.5-7B", ModelFacts(
        name="Qwen2.5-7B", model_type="qwen2", family="decoder", hidden_size=3584, num_layers=28, num_heads=28,
        num_kv_heads=4, head_dim=128, intermediate_size=18944, vocab_size=152064, max_positions=131072,
        tie_word_embeddings=False, qkv_bias=True)),
    "SmolLM2-135M": ("HuggingFaceTB/SmolLM2-135M", ModelFacts(
        name="SmolLM2-135M", model_type="llama", family="decoder", hidden_size=576, num_layers=30, num_heads=9,
        num_kv_heads=3, head_dim=64, intermediate_size=1536, vocab_size=49152, max_positions=8192,
        tie_word_embeddings=True)),
    "BERT-base": ("google-bert/bert-base-uncased", ModelFacts(
        name="BERT-base", model_type="bert", family="encoder", hidden_size=768, num_layers=12, num_heads=12,
        num_kv_heads=12, head_dim=64, intermediate_size=3072, vocab_size=30522, max_positions=512,
        type_vocab_size=2, hidden_dropout=0.1, attention_dropout=0.1)),
    "BERT-large": ("google-bert/bert-large-uncased", ModelFacts(
        name="BERT-large", model_type="bert", family="encoder", hidden_size=1024, num_layers=24, num_heads=16,
        num_kv_heads=16, head_dim=64, intermediate_size=4096, vocab_size=30522, max_positions=512,
        type_vocab_size=2, hidden_dropout=0.1, attention_dropout=0.1)),
    "RoBERTa-base": ("FacebookAI/roberta-base", ModelFacts(
        name="RoBERTa-base", model_type="roberta", family="encoder", hidden_size=768, num_layers=12, num_heads=12,
        num_kv_heads=12, head_dim=64, intermediate_size=3072, vocab_size=50265, max_positions=514,
        type_vocab_size=1, hidden_dropout=0.1, attention_dropout=0.1)),
    "RoBERTa-large": ("FacebookAI/roberta-large", ModelFacts(
        name="RoBERTa-large", model_type="roberta", family="encoder", hidden_size=1024, num_layers=24,
        num_heads=16, num_kv_heads=16, head_dim=64, intermediate_size=4096, vocab_size=50265, max_positions=514,
        type_vocab_size=1, hidden_dropout=0.1, attention_dropout=0.1)),
}

# Other spellings people use for the same checkpoints.
_EXTRA_NAMES = {
    "meta-llama/meta-llama-3.1-8b": "Llama-3.1-8B", "meta-llama-3.1-8b": "Llama-3.1-8B",
    "meta-llama/meta-llama-3.1-70b": "Llama-3.1-70B", "meta-llama-3.1-70b": "Llama-3.1-70B",
    "mistral-7b": "Mistral-7B-v0.1", "bert-base-uncased": "BERT-base",
    "bert-large-uncased": "BERT-large", "roberta-base": "RoBERTa-base", "roberta-large": "RoBERTa-large",
}


def _lookup_table() -> dict[str, str]:
    table = {}
    for name, (hub_id, _) in BUILTIN_MODELS.items():
        table[name.lower()] = name
        table[hub_id.lower()] = name
    table.update({key: value for key, value in _EXTRA_NAMES.items()})
    return table


_LOOKUP = _lookup_table()


def builtin_facts(name: str) -> ModelFacts | None:
    """The built-in facts for `name` (any known spelling, case-insensitive; an -Instruct or -Chat variant has its
    base's architecture), or None."""
    key = name.strip().lower()
    for suffix in ("-instruct", "-chat"):
        if key.endswith(suffix) and key not in _LOOKUP:
            key = key[: -len(suffix)]
    found = _LOOKUP.get(key)
    return BUILTIN_MODELS[found][1] if found else None


def builtin_names() -> list[str]:
    return list(BUILTIN_MODELS)
