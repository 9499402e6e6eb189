"""Shared fixtures: a tiny randomly initialised BERT classifier saved as a local model folder, and a tiny,
easy-to-learn CSV task. Nothing is downloaded: the hub is switched off before any HF library is imported."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json  # noqa: E402
import random  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from peftlab.models import load_classifier, load_tokenizer, resolve_model  # noqa: E402

# The models here are tiny: one intra-op thread is fastest, and it avoids thread contention when the machine
# is busy (with 2 threads on 2 shared cores, small ops were measured ~20x slower than with 1).
torch.set_num_threads(1)

# A study at fixed rates and budget (no rate race, one validation pass per epoch, no early stopping), as peftlab ran
# before rates were raced by default: what tests that are not about tuning or early stopping run, so that they check
# their own subject at a third of the training.
FIXED_RATES = {"no_tune": True, "evaluations_per_epoch": 1, "patience": None}
FIXED_RATES_CLI = ["--no-tune", "--evaluations-per-epoch", "1", "--patience", "0"]

MINILM_VOCAB_SIZE = 30522
TINY_LABELS = ["neg", "pos"]  # load_task sorts string labels: neg -> 0, pos -> 1

GOOD_WORDS = ["good", "great", "excellent", "wonderful", "superb", "fantastic", "lovely", "amazing", "brilliant", "happy"]
BAD_WORDS = ["bad", "awful", "terrible", "horrible", "poor", "dreadful", "boring", "worst", "ugly", "sad"]
FILLER_WORDS = ["the", "movie", "film", "was", "plot", "actors", "and", "story", "really", "quite", "it", "very"]


def tiny_bert_config(**overrides):
    from transformers import BertConfig

    settings = dict(
        vocab_size=MINILM_VOCAB_SIZE,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=160,
        num_labels=len(TINY_LABELS),
        id2label=dict(enumerate(TINY_LABELS)),
        label2id={label: i for i, label in enumerate(TINY_LABELS)},
    )
    settings.update(overrides)
    return BertConfig(**settings)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A folder with a random 2-layer BERT classifier (safetensors) and the MiniLM tokenizer.

    Load it with ``load_classifier(resolve_model(str(dir)), ["neg", "pos"])``: every load gives the same weights
    (the head is in the checkpoint, with the same shape), so it is a reproducible "pretrained base"."""
    from transformers import BertForSequenceClassification

    directory = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config())
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer = load_tokenizer(resolve_model("minilm"))
    assert len(tokenizer) == MINILM_VOCAB_SIZE
    tokenizer.save_pretrained(directory)
    assert (directory / "model.safetensors").is_file()
    return directory


def tiny_texts(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """n rows, half "pos" (texts with words from GOOD_WORDS), half "neg" (BAD_WORDS), shuffled, seeded."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = TINY_LABELS[i % 2]
        vocabulary = GOOD_WORDS if label == "pos" else BAD_WORDS
        words = rng.sample(vocabulary, 3) + rng.sample(FILLER_WORDS, rng.randint(2, 6))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    rng.shuffle(rows)
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def tiny_task_csv(tmp_path_factory):
    """A CSV (text,label) of 120 rows whose label is given by which vocabulary the words come from."""
    path = tmp_path_factory.mktemp("tiny-task") / "tiny_task.csv"
    tiny_texts().to_csv(path, index=False)
    return path


@pytest.fixture
def load_tiny_bert(tiny_bert_dir):
    """A callable returning a fresh copy of the tiny base classifier (identical weights on every call)."""
    ref = resolve_model(str(tiny_bert_dir))

    def load():
        return load_classifier(ref, TINY_LABELS)

    return load


# --- a tiny decoder and two small prompted tasks (multiple choice, generation) ------------------------------------

COLOURS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "blood": "red", "sun": "yellow"}


@pytest.fixture(scope="session")
def smollm_tokenizer():
    """The MiniLM WordPiece tokenizer with an EOS, as a decoder's (the name says its role in these tests)."""
    tokenizer = load_tokenizer(resolve_model("minilm"))
    tokenizer.eos_token = "[SEP]"
    return tokenizer


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm_tokenizer):
    """A folder with a random 2-layer Llama causal LM (safetensors) and the SmolLM2 tokenizer (chat template)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smollm_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, eos_token_id=smollm_tokenizer.eos_token_id,
                         pad_token_id=smollm_tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(directory, safe_serialization=True)
    smollm_tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def colour_bigbench(tmp_path_factory):
    """A BIG-bench task.json: 'What colour is X?' with 6 choices, 60 examples (each object 10 times)."""
    examples = [{"input": f"What colour is {thing}?", "target_scores": {c: int(c == colour) for c in COLOURS.values()}}
                for _ in range(10) for thing, colour in COLOURS.items()]
    path = tmp_path_factory.mktemp("bb") / "colours.json"
    path.write_text(json.dumps({"name": "colours", "append_choices_to_input": False, "examples": examples}))
    return path


@pytest.fixture(scope="session")
def colour_jsonl(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "colours.jsonl"
    rows = [{"prompt": f"What colour is {thing}?", "completion": colour} for _ in range(10)
            for thing, colour in COLOURS.items()]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path
