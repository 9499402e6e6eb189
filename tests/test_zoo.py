"""Any model the user brings: every architecture of the zoo (tests/zoo.py, tiny random models saved as local folders)
runs `compare` with full, lora, ia3, prompt and adapter, each run estimated and probed for robustness; a method that
cannot apply is refused with its reason; the runs export (adapter and merged); the adapters load back with peft (or
peftlab's adapter loader) with identical logits; the diagnosis reads every family."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast

from peftlab import CompareConfig, compare
from peftlab.diagnose import DiagnoseConfig, diagnose
from peftlab.tasks.reference import reference_texts
from peftlab.diagnose.run import DiagnoseSettings
from peftlab.diagnose.vocabulary import vocabulary_fit
from peftlab.export import ExportConfig, export
from peftlab.methods import get_method
from peftlab.methods.targets import attach_points
from peftlab.models import head_module_names, load_classifier, resolve_model
from zoo import ARCHITECTURES, save_tiny_model
from conftest import FIXED_RATES

ZOO = [arch for arch in ARCHITECTURES if arch.available()]
METHODS = ["full", "lora", "ia3", "prompt", "adapter"]
# what may be refused, and must say why: the only combinations that cannot apply among METHODS
REFUSED = {("t5", "prompt"): "takes no input embeddings", ("bart", "prompt"): "takes no input embeddings"}


@pytest.fixture(scope="module")
def zoo_dirs(tmp_path_factory, smollm_tokenizer):
    root = tmp_path_factory.mktemp("zoo")
    return {arch.name: save_tiny_model(arch, root / arch.name, smollm_tokenizer) for arch in ZOO}


@pytest.mark.parametrize("arch", ZOO, ids=lambda arch: arch.name)
def test_compare_runs_every_method_that_applies(arch, zoo_dirs, tiny_task_csv, tmp_path):
    out = tmp_path / "out"
    results = compare(CompareConfig(**FIXED_RATES, model=str(zoo_dirs[arch.name]), data=str(tiny_task_csv), methods=METHODS,
                                    max_steps=1, batch_size=4, max_train_examples=16, max_eval_examples=8,
                                    perturb_examples=8, attack_examples=2, attack_query_budget=10, out=str(out)))
    for run in results["runs"]:
        expected = REFUSED.get((arch.name, run["method"]))
        if expected:
            assert run["status"] == "refused" and expected in run["reason"] and "\n" not in run["reason"], run
            continue
        assert run["status"] == "ok", (run["method"], run.get("reason"))
        assert run["metrics"]["accuracy"] is not None
        assert 0 < run["cost"]["trainable_params"] <= run["cost"]["total_params"]
        estimate = run["estimate"]  # the cost model knows the architecture from its config
        assert "flops_per_step_counted" in estimate, (run["method"], estimate)
        assert 0.8 <= estimate["flops_per_step_estimated"] / estimate["flops_per_step_counted"] <= 1.25, estimate
        assert 0.8 <= estimate["trainable_params_estimated"] / run["cost"]["trainable_params"] <= 1.25, estimate
        assert 0.8 <= estimate["total_params_estimated"] / run["cost"]["total_params"] <= 1.25, estimate
        assert run["robustness"].get("status", "ok") == "ok" and "clean_accuracy" in run["robustness"], run["robustness"]
    assert (out / "report.html").is_file() and (out / "results.json").is_file()
    for method in ("lora", "ia3"):  # exported as a peft adapter and merged into the base, logits checked by export
        summary = export(ExportConfig(run_dir=str(out), method=method, adapter=str(tmp_path / method / "adapter"),
                                      merged=str(tmp_path / method / "merged")))
        assert (tmp_path / method / "adapter" / "adapter_model.safetensors").is_file()
        assert summary["merged"]["max_abs_logit_difference"] <= 1e-4, (method, summary["merged"])


def _seeded_classifier(folder):
    torch.manual_seed(1)  # the new head starts the same on every load
    return load_classifier(resolve_model(str(folder)), ["neg", "pos"], pad_token_id=0).eval()


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt", "adapter"])
@pytest.mark.parametrize("arch", ZOO, ids=lambda arch: arch.name)
def test_a_saved_adapter_loads_back_with_identical_logits(arch, method, zoo_dirs, tmp_path):
    if (arch.name, method) in REFUSED:
        pytest.skip(f"{method} is refused on {arch.name}")
    folder = zoo_dirs[arch.name]
    registered = get_method(method)
    base = _seeded_classifier(folder)
    settings, _ = registered.resolve(base, {})
    model = registered.apply(base, settings).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # stand-in for training: every trainable tensor moves away from its initial value
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    ids = torch.randint(5, 1000, (2, 12), generator=generator)
    ids[:, -1] = 102  # [SEP], the tokenizer's EOS: T5's and BART's classifiers read the last EOS token
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        trained = model(**batch).logits
    registered.save(model, tmp_path)
    fresh = _seeded_classifier(folder)
    loaded = (PeftModel.from_pretrained(fresh, str(tmp_path)) if method != "adapter"
              else registered.load(fresh, tmp_path)).eval()
    with torch.no_grad():
        again = loaded(**batch).logits
        untrained = _seeded_classifier(folder)(**batch).logits
    assert torch.allclose(trained, again, atol=1e-5), (trained, again)
    assert not torch.allclose(trained, untrained, atol=1e-4)  # the update is in the saved files


@pytest.mark.parametrize("arch", ZOO, ids=lambda arch: arch.name)
def test_every_block_has_its_attach_points(arch, smollm_tokenizer):
    """The structure finder sees each block's attention(s), their keys/values and output, and the FFN output."""
    config = arch.config(len(smollm_tokenizer), smollm_tokenizer)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    points = attach_points(model, head_module_names(model))
    stacks = 2 if arch.stack == "encoder-decoder" else 1
    layers = 1 if arch.name == "albert" else 2  # ALBERT shares one layer's weights across its depth
    assert len(points.blocks) == stacks * layers  # every zoo model has 2 layers per stack
    for block in points.blocks:
        assert block.ffn_output and all(a.output and a.keys_values for a in block.attentions), block
        assert len(block.attentions) in (1, 2)  # self-attention; a decoder of an encoder-decoder also cross-attends


@pytest.mark.parametrize("name", ["distilbert", "modernbert", "gpt2", "t5"])
def test_the_diagnosis_reads_every_family(name, zoo_dirs, tiny_task_csv, tmp_path):
    """Vocabulary fit, representation shift, the probe and the full update's spectrum by layer type, the types
    found from the module structure (GPT-2's Conv1D, ModernBERT's fused Wqkv, T5's encoder and decoder)."""
    diagnosis = diagnose(DiagnoseConfig(model=str(zoo_dirs[name]), data=str(tiny_task_csv), out=str(tmp_path),
                                        batch_size=8, settings=DiagnoseSettings(probe_steps=2, shift_texts=20,
                                                                                lm_texts=4, probe_examples=50)))
    signals = diagnosis.get("signals", diagnosis)
    assert 0 <= signals["vocabulary"]["unknown_rate"] <= 1
    assert {"attention_output", "ffn_in", "ffn_out"} <= set(signals["spectrum"]), signals["spectrum"].keys()
    assert all(entry["matrices"] >= 1 for entry in signals["spectrum"].values())


@pytest.mark.parametrize("kind", ["byte-level BPE", "unigram"])
def test_vocabulary_fit_reads_any_tokenizer(kind):
    """WordPiece is MiniLM's (tests/test_diagnose.py); byte-level BPE (GPT-2, Llama 3) and unigram (SentencePiece:
    T5, XLM-R) are trained here on the diagnosis's English reference texts."""
    texts = reference_texts()
    if kind == "byte-level BPE":
        backend = ByteLevelBPETokenizer()
        backend.train_from_iterator(texts, vocab_size=2000, special_tokens=["<unk>"])
    else:
        backend = SentencePieceUnigramTokenizer()
        backend.train_from_iterator(texts, vocab_size=2000, special_tokens=["<unk>"], unk_token="<unk>")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    english, cyrillic = vocabulary_fit(texts[:50], tokenizer), vocabulary_fit(["привет как дела сегодня"], tokenizer)
    assert english["fertility"] >= 1 and english["uncovered_char_rate"] < 0.1, english
    assert cyrillic["uncovered_char_rate"] > 0.9, cyrillic
