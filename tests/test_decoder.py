"""Decoder LMs: task types, causal encoding, likelihood-scored multiple choice, generation, methods, memory options.

Unit tests run on a tiny random Llama (2 layers, hidden 32) built here with the MiniLM tokenizer (fast to load;
[SEP] serves as EOS), with and without a chat template; the e2e test fine-tunes SmolLM2-135M with LoRA on a slice
of a BIG-bench task.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from peftlab.errors import ConfigError, DataError, MethodNotApplicable
from peftlab.evaluate.choice import choice_log_likelihoods, choice_metrics, evaluate_choices
from peftlab.evaluate.generation import evaluate_generation, match_scores, normalize_answer, target_loss
from peftlab.methods import get_method
from peftlab.models import load_causal_lm, load_tokenizer, resolve_model
from peftlab.tasks import load_task
from peftlab.tasks.causal import IGNORE_INDEX
from peftlab.tasks.encode import counted_tokens, encode_task, train_loader
from peftlab.train import TrainConfig, train

BIGBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bigbench"
from conftest import FIXED_RATES, COLOURS


CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}<assistant> {% endif %}")


@pytest.fixture(scope="module")
def chat_tokenizer(smollm_tokenizer):
    import copy

    tokenizer = copy.deepcopy(smollm_tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# --- task types ------------------------------------------------------------------------------------------------------

def test_task_type_inferred_and_chosen(colour_bigbench, colour_jsonl, tmp_path):
    assert load_task(str(colour_bigbench)).task_type == "classification"  # target_scores default, as before
    mc = load_task(str(colour_bigbench), task_type="multiple-choice")
    assert mc.task_type == "multiple-choice" and mc.selection_metric == "accuracy"
    assert mc.label_names == list(COLOURS.values()) and sum(len(s) for s in mc.splits.values()) == 60
    row = mc.splits["train"][0]
    assert row["choices"][row["label"]] == COLOURS[json.loads(row["messages"])[0]["content"].split()[-1][:-1]]

    gen = load_task(str(colour_jsonl))  # prompt/completion JSONL: generation, inferred
    assert gen.task_type == "generation" and gen.selection_metric == "neg_loss" and gen.describe()["type"] == "generation"
    bb_target = tmp_path / "targets.json"  # BIG-bench with only `target` strings: generation, inferred
    bb_target.write_text(json.dumps({"examples": [{"input": f"{i}+1=", "target": str(i + 1)} for i in range(30)]}))
    assert load_task(str(bb_target)).task_type == "generation"
    chat = tmp_path / "chat.jsonl"
    chat.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": f"say {i}"},
                                                       {"role": "assistant", "content": str(i)}]}) for i in range(30)))
    task = load_task(str(chat))
    assert task.task_type == "generation" and sorted(int(t) for s in task.splits.values() for t in s["target"]) == list(range(30))

    with pytest.raises(ConfigError, match="--task must be one of"):
        load_task(str(colour_jsonl), task_type="ranking")
    with pytest.raises(DataError, match="multiple choice needs a BIG-bench"):
        load_task(str(colour_jsonl), task_type="multiple-choice")


def test_bigbench_strategyqa_as_generation_uses_target_strings():
    task = load_task(str(BIGBENCH / "strategyqa.json"), task_type="generation", max_train_examples=8, max_eval_examples=4)
    target = task.splits["train"][0]["target"]
    assert target.split(".")[0] in ("Yes", "No") and len(target) > 10  # the explanation, not the bare choice


# --- causal encoding -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("templated", [True, False])
def test_prompt_tokens_are_masked(templated, colour_bigbench, colour_jsonl, smollm_tokenizer, chat_tokenizer):
    tok = chat_tokenizer if templated else smollm_tokenizer
    for path, task_type in ((colour_bigbench, "multiple-choice"), (colour_jsonl, "generation")):
        encoded = encode_task(load_task(str(path), task_type=task_type), tok, 128)["train"]
        for row in encoded.select(range(5)):
            prompt, ids, labels = row["prompt_ids"], row["input_ids"], row["labels"]
            assert ids[:len(prompt)] == prompt and labels[:len(prompt)] == [IGNORE_INDEX] * len(prompt)
            answer = labels[len(prompt):]
            assert answer == ids[len(prompt):] and IGNORE_INDEX not in answer
            text = tok.decode(answer, skip_special_tokens=True)
            assert text in COLOURS.values()
            rendered = tok.decode(prompt, skip_special_tokens=True)
            assert rendered.startswith("< user > what colour is") == templated  # the chat template when there is one
            assert rendered.endswith("< assistant >") == templated
            if task_type == "generation":
                assert answer[-1] == tok.eos_token_id  # trained to stop
        batch = next(iter(train_loader(encoded, tok, 8, seed=0)))
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        assert ((batch["attention_mask"] == 0) <= (batch["labels"] == IGNORE_INDEX)).all()  # padding is masked too
        assert counted_tokens(batch) == int((batch["labels"] != IGNORE_INDEX).sum()) < int(batch["attention_mask"].sum())


def test_long_prompts_lose_their_start_not_the_answer(colour_jsonl, smollm_tokenizer):
    encoded = encode_task(load_task(str(colour_jsonl)), smollm_tokenizer, 12)["train"]
    row = encoded[0]
    assert row["length"] == len(row["input_ids"]) <= 12
    assert smollm_tokenizer.decode([t for t in row["labels"] if t != IGNORE_INDEX], skip_special_tokens=True) in COLOURS.values()


# --- multiple-choice scoring -----------------------------------------------------------------------------------------

class FixedNextToken(torch.nn.Module):
    """A 'language model' whose next-token distribution is the same at every position: softmax(bias)."""

    def __init__(self, bias: torch.Tensor):
        super().__init__()
        self.bias = bias

    def forward(self, input_ids, attention_mask=None):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.bias.expand(*input_ids.shape, -1).clone())


def test_choice_scoring_picks_the_highest_length_normalised_likelihood():
    vocab = 6
    bias = torch.tensor([0.0, 3.0, 2.5, -1.0, -1.0, -1.0])
    log_p = bias.log_softmax(-1)
    model = FixedNextToken(bias)
    # example 0: choice A = three tokens 1 (mean log p high), choice B = one token 2 (sum higher, mean lower)
    # example 1: choice A = token 3 (unlikely), choice B = token 1 (likely): both rules pick B
    dataset = {"prompt_ids": [[0, 5], [4]], "choice_ids": [[[1, 1, 1], [2]], [[3], [1]]], "answer": [0, 1]}
    scores = choice_log_likelihoods(model, dataset, pad_token_id=0, device="cpu", batch_size=3)
    assert scores[0][0] == (pytest.approx(3 * log_p[1].item()), 3) and scores[0][1] == (pytest.approx(log_p[2].item()), 1)
    assert scores[1][0] == (pytest.approx(log_p[3].item()), 1)
    assert 3 * log_p[1] < log_p[2] < log_p[1]  # the constructed case: sum prefers B, the mean prefers A
    metrics = choice_metrics(scores, dataset["answer"])
    assert metrics["accuracy"] == 1.0 and metrics["accuracy_unnormalized"] == 0.5
    assert metrics["loss"] == pytest.approx(-(3 * log_p[1] + log_p[1]).item() / 4)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert vocab == len(bias)


# --- methods train on a decoder --------------------------------------------------------------------------------------

def _train_steps(model, encoded, tokenizer, learning_rate, steps=12, evaluate=None):
    config = TrainConfig(learning_rate=learning_rate, max_steps=steps, batch_size=8, warmup_ratio=0.0,
                         evaluate=evaluate or evaluate_choices, eval_batch_size=16,
                         selection_metric="neg_loss" if evaluate is evaluate_generation else "accuracy")
    return train(model, encoded, tokenizer, config, Accelerator(cpu=True), num_labels=0)


@pytest.mark.parametrize("name,learning_rate", [("full", 3e-3), ("lora", 5e-2), ("dora", 5e-2), ("ia3", 5e-1),
                                                ("prompt", 1e-1), ("prefix", 2e-1), ("adapter", 5e-2)])
def test_each_method_trains_a_causal_lm(name, learning_rate, tiny_llama_dir, colour_bigbench, smollm_tokenizer):
    task = load_task(str(colour_bigbench), task_type="multiple-choice", max_train_examples=24, max_eval_examples=6)
    encoded = encode_task(task, smollm_tokenizer, 64)
    torch.manual_seed(0)
    base = load_causal_lm(resolve_model(str(tiny_llama_dir)))
    method = get_method(name)
    settings, _ = method.resolve(base, {})
    if name == "lora":
        assert settings["target_modules"] == "all-linear" and str(settings["task_type"]) in ("CAUSAL_LM", "TaskType.CAUSAL_LM")
    model = method.apply(base, settings)
    before = target_loss(model, encoded["train"], smollm_tokenizer, 16, "cpu")
    outcome = _train_steps(model, encoded, smollm_tokenizer, learning_rate, steps=6)
    after = target_loss(model, encoded["train"], smollm_tokenizer, 16, "cpu")
    assert math.isfinite(after) and after < before - 0.05, (name, before, after)
    assert {"accuracy", "loss", "perplexity"} <= set(outcome.validation[0])


def test_bitfit_and_head_refuse_a_llama_clearly(tiny_llama_dir):
    base = load_causal_lm(resolve_model(str(tiny_llama_dir)))
    with pytest.raises(MethodNotApplicable, match="bitfit.*does not apply.*bias terms.*'llama' has none"):
        get_method("bitfit").apply(base, {})
    with pytest.raises(MethodNotApplicable, match="method 'head' does not apply to this model: it trains a task head"):
        get_method("head").apply(load_causal_lm(resolve_model(str(tiny_llama_dir))), {})


# --- generation ----------------------------------------------------------------------------------------------------

def test_match_scores():
    assert normalize_answer("  The Blue, sky! ") == "blue sky"
    scores = match_scores(["blue", "The green.", "red"], [["blue"], ["green"], ["white", "black"]])
    assert scores == {"exact_match": pytest.approx(1 / 3), "normalized_match": pytest.approx(2 / 3), "correct": "100"}


def test_generation_is_learned_and_scored_by_exact_match(tiny_llama_dir, colour_jsonl, smollm_tokenizer):
    task = load_task(str(colour_jsonl), max_eval_examples=6)
    encoded = encode_task(task, smollm_tokenizer, 64)
    torch.manual_seed(0)
    model = load_causal_lm(resolve_model(str(tiny_llama_dir)))
    before = evaluate_generation(model, encoded["validation"], smollm_tokenizer, 16, "cpu")
    assert before["exact_match"] == 0.0
    outcome = _train_steps(get_method("full").apply(model, {}), encoded, smollm_tokenizer, 3e-2, steps=60,
                           evaluate=evaluate_generation)
    after = evaluate_generation(model, encoded["validation"], smollm_tokenizer, 16, "cpu")
    assert 0 < after["exact_match"] <= after["normalized_match"], after  # some answers generated exactly
    assert after["perplexity"] < before["perplexity"] / 100 and len(outcome.validation) == 10


# --- through compare -------------------------------------------------------------------------------------------------

def test_compare_multiple_choice_and_generation_on_a_tiny_llama(tiny_llama_dir, colour_bigbench, colour_jsonl, tmp_path):
    from rich.console import Console

    from peftlab.report import print_table
    from peftlab import CompareConfig, compare

    common = dict(model=str(tiny_llama_dir), max_train_examples=24, max_eval_examples=6, epochs=1, batch_size=8,
                  max_length=64, method_config=None, **FIXED_RATES)
    mc = compare(CompareConfig(data=str(colour_bigbench), task="multiple-choice", methods=["lora", "bitfit"],
                               out=str(tmp_path / "mc"), **common))
    assert mc["study"]["task"]["type"] == "multiple-choice"
    lora, bitfit = mc["runs"]
    assert lora["status"] == "ok" and {"accuracy", "accuracy_unnormalized", "test_perplexity"} <= set(lora["metrics"])
    assert lora["robustness"] == {"status": "skipped", "reason": "not available for task type multiple-choice"}
    assert lora["cost"]["train_tokens"] < lora["cost"]["train_steps"] * 8 * 64  # target tokens only
    assert bitfit["status"] == "refused" and "bias terms" in bitfit["reason"]
    estimate = lora["estimate"]  # estimated as a causal LM: the LM head over every position is counted
    assert estimate["flops_per_step_estimated"] / estimate["flops_per_step_counted"] == pytest.approx(1.0, abs=0.03)
    gen = compare(CompareConfig(data=str(colour_jsonl), methods=["prompt"], robustness=False,
                                out=str(tmp_path / "gen"), **common))
    assert gen["runs"][0]["status"] == "ok", gen["runs"][0].get("reason")
    assert {"exact_match", "normalized_match", "test_perplexity"} <= set(gen["runs"][0]["metrics"])
    estimate = gen["runs"][0]["estimate"]
    assert estimate["flops_per_step_estimated"] / estimate["flops_per_step_counted"] == pytest.approx(1.0, abs=0.03)
    console = Console(record=True, width=200)
    print_table(gen, console)
    assert "exact match" in console.export_text()


def test_memory_options(tiny_llama_dir, colour_bigbench, tmp_path):
    from peftlab.models.memory import MemoryOptions
    from peftlab import CompareConfig, compare

    if not torch.cuda.is_available():
        for flag in ("load_in_4bit", "load_in_8bit"):
            with pytest.raises(ConfigError, match="needs a CUDA GPU"):
                CompareConfig(**{flag: True}).check()
    with pytest.raises(ConfigError, match="exclude each other"):
        MemoryOptions(load_in_4bit=True, load_in_8bit=True).check()
    results = compare(CompareConfig(**FIXED_RATES, model=str(tiny_llama_dir), data=str(colour_bigbench), task="multiple-choice",
                                    methods=["lora"], robustness=False, max_train_examples=16, max_eval_examples=4,
                                    epochs=1, batch_size=8, max_length=64, gradient_checkpointing=True, bf16=True,
                                    out=str(tmp_path / "mem")))
    run = results["runs"][0]
    assert run["status"] == "ok", run.get("reason")
    assert results["study"]["memory_options"]["gradient_checkpointing"] is True
    assert all(math.isfinite(loss) for loss in run["curve"]["train_loss"])


# --- end to end on SmolLM2 -------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_smollm2_lora_improves_validation_loss_on_bigbench():
    tokenizer = load_tokenizer(resolve_model("smollm2-135m"))
    tokenizer.chat_template = None  # plain prompts: the template's system turn would triple the tokens (CI budget)
    task = load_task(str(BIGBENCH / "intent_recognition.json"), task_type="multiple-choice", max_train_examples=24,
                     max_eval_examples=6, seed=0)
    encoded = encode_task(task, tokenizer, 48)
    torch.manual_seed(0)
    base = load_causal_lm(resolve_model("smollm2-135m"), tokenizer.pad_token_id)
    before = evaluate_choices(base, encoded["validation"], tokenizer, 16, "cpu")
    lora = get_method("lora")
    model = lora.apply(base, lora.resolve(base, {})[0])
    outcome = _train_steps(model, encoded, tokenizer, 2e-3, steps=3)  # one epoch of 24 examples
    after = outcome.validation[-1]
    assert after["loss"] < before["loss"] - 0.3, (before, after)
