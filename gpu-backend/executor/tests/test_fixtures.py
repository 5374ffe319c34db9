"""The tiny fixtures: random Llama + PEFT adapters, checked against transformers and peft.

Run: cd gpu-backend/executor && ../../.venv/bin/python -m pytest tests/test_fixtures.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from lorafleet_executor.fixtures import TINY_LLAMA, build_fixtures, fixtures_root
from lorafleet_executor.fixtures.__main__ import main
from lorafleet_executor.fixtures.adapters import ALL_LINEAR, AdapterSpec
from lorafleet_executor.fixtures.errors import FixtureSpecError
from lorafleet_executor.fixtures.fixture_dir import MARKER, file_sha256, finish, read_marker, start
from lorafleet_executor.fixtures.llama_config import LlamaShape
from lorafleet_executor.fixtures.tiny_llama import TINY_SEED, build_tiny_llama


@pytest.fixture(scope="module")
def root() -> Path:
    """The shared fixtures folder, made (or found complete) once per module."""
    path = fixtures_root(os.environ)
    build_fixtures(path, only="tiny")
    return path


@pytest.fixture(scope="module")
def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


@pytest.fixture(scope="module")
def tiny(root: Path):
    model = AutoModelForCausalLM.from_pretrained(root / TINY_LLAMA)
    return model.eval(), AutoTokenizer.from_pretrained(root / TINY_LLAMA)


def entries(manifest: dict, kind: str, base: str | None = None) -> list[dict]:
    return [
        e
        for e in manifest["fixtures"]
        if e["kind"] == kind and (base is None or e.get("base") == base)
    ]


def test_tiny_llama_config_is_gqa_untied_and_matches_the_weights(root: Path, tiny) -> None:
    model, tokenizer = tiny
    config = model.config
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (4, 2, 16)
    assert config.hidden_size == 64 and 2 <= config.num_hidden_layers <= 4
    assert config.intermediate_size % (config.num_key_value_heads * config.head_dim) == 0
    assert config.intermediate_size % config.hidden_size != 0
    assert config.vocab_size == len(tokenizer) == 512
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    raw = json.loads((root / TINY_LLAMA / "config.json").read_text())
    assert raw["rope_theta"] == 10000.0 and raw["tie_word_embeddings"] is False


def test_tiny_greedy_output_depends_on_the_input(tiny) -> None:
    model, tokenizer = tiny
    prompts = ["Hello", "The capital of", "for i in range", "rank four", "cat", "Numbers: 7"]
    continuations = set()
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
        continuations.add(tuple(out[0, ids.shape[1] :].tolist()))
        logits = model(ids).logits[0, -1]
        assert 1.0 < logits.std().item() < 10.0, "logits should be neither flat nor exploding"
    assert len(continuations) == len(prompts)
    first_tokens = {c[0] for c in continuations}
    assert len(first_tokens) >= 3


def test_tiny_tokenizer_round_trips_and_knows_chatml(tiny) -> None:
    _, tokenizer = tiny
    for text in ["What is the capital of France?", "  two  spaces\n\ttab", "Ünï 🙂 中文 x=3.14"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    specials = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>")]
    assert specials == [1, 2]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (1, 2)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert ids == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    encoded = tokenizer.encode("<|im_start|>user")
    assert encoded[0] == 1, "chat markers must be matched whole, never split by BPE"


def test_adapters_cover_ranks_targets_and_rslora(manifest: dict) -> None:
    adapters = entries(manifest, "lora", TINY_LLAMA)
    assert len(adapters) >= 21
    assert {a["rank"] for a in adapters} == {4, 8, 16, 64}
    target_sets = {tuple(a["targets"]) for a in adapters}
    assert {("q_proj", "v_proj"), ALL_LINEAR, ("o_proj", "down_proj")} <= target_sets
    assert any(a["use_rslora"] for a in adapters)
    assert len([a for a in adapters if a["name"].startswith("tiny-mix-")]) == 16


def test_adapter_files_match_their_manifest_entry(root: Path, manifest: dict, tiny) -> None:
    model, _ = tiny
    for entry in entries(manifest, "lora", TINY_LLAMA):
        folder = root / entry["path"]
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["r"] == entry["rank"] and config["lora_alpha"] == entry["alpha"]
        assert config["use_rslora"] == entry["use_rslora"]
        assert config["base_model_name_or_path"] == TINY_LLAMA
        seen = set()
        with safe_open(folder / "adapter_model.safetensors", "pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is not a dict)
                # base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
                module_path, kind = key.rsplit(".", 2)[0], key.split(".")[-2]
                base = model.get_submodule(module_path.removeprefix("base_model.model."))
                shape = tuple(weights.get_slice(key).get_shape())
                rank = entry["rank"]
                expected = (
                    (rank, base.in_features) if kind == "lora_A" else (base.out_features, rank)
                )
                assert shape == expected, key
                seen.add(module_path.split(".")[-1])
        assert seen == set(entry["targets"])
        for name, sha in entry["files"].items():
            assert file_sha256(folder / name) == sha


def test_every_adapter_loads_in_peft_and_changes_the_output(root: Path, manifest: dict) -> None:
    base = AutoModelForCausalLM.from_pretrained(root / TINY_LLAMA).eval()
    ids = torch.tensor([[1, 40, 41, 300, 12, 99, 2]])
    with torch.no_grad():
        base_logits = base(ids).logits
    adapters = entries(manifest, "lora", TINY_LLAMA)
    model = PeftModel.from_pretrained(base, root / adapters[0]["path"], adapter_name="a0")
    for index, entry in enumerate(adapters[1:], start=1):
        model.load_adapter(root / entry["path"], adapter_name=f"a{index}")
    outputs = []
    with torch.no_grad():
        for index, entry in enumerate(adapters):
            model.set_adapter(f"a{index}")
            logits = model(ids).logits
            change = (logits - base_logits).norm() / base_logits.norm()
            assert 0.02 < change.item() < 2.0, f"{entry['name']} changes logits by {change:.3f}"
            outputs.append(logits)
    assert not torch.allclose(outputs[0], outputs[1]), "distinct adapters, distinct outputs"


def test_a_fresh_process_makes_the_same_bytes_as_the_shared_fixtures(
    tmp_path: Path, manifest: dict
) -> None:
    """Another process with another string-hash seed: set iteration order once leaked into
    adapter_config.json (PEFT's target_modules set)."""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    command = [sys.executable, "-m", "lorafleet_executor.fixtures", "--out", str(tmp_path)]
    subprocess.run([*command, "--only", "tiny"], env=env, check=True, capture_output=True)
    fresh = json.loads((tmp_path / "manifest.json").read_text())

    def tiny_group(manifest: dict) -> dict[str, dict[str, str]]:
        return {
            e["name"]: e["files"]
            for e in manifest["fixtures"]
            if TINY_LLAMA in (e["name"], e.get("base"))
        }

    assert len(tiny_group(fresh)) == 22
    assert tiny_group(fresh) == tiny_group(manifest)


def test_another_seed_gives_other_weights(tmp_path: Path, manifest: dict) -> None:
    build_tiny_llama(tmp_path, seed=TINY_SEED + 1)
    tiny = next(e for e in manifest["fixtures"] if e["name"] == TINY_LLAMA)
    assert file_sha256(tmp_path / "model.safetensors") != tiny["files"]["model.safetensors"]
    assert file_sha256(tmp_path / "tokenizer.json") == tiny["files"]["tokenizer.json"]


def test_a_fixture_without_marker_is_rebuilt_and_a_complete_one_kept(tmp_path: Path) -> None:
    folder = tmp_path / "thing"
    start(folder)
    (folder / "data.bin").write_bytes(b"first")
    assert read_marker(folder) is None, "no marker yet: incomplete"
    entry = finish(tmp_path, folder, {"kind": "model"})
    assert read_marker(folder) == entry
    assert entry["path"] == "thing" and MARKER not in entry["files"]
    (folder / "data.bin").unlink()
    assert read_marker(folder) is None, "a file named by the marker is gone: incomplete"
    (folder / "leftover").write_text("from an interrupted build")
    start(folder)
    assert list(folder.iterdir()) == []


def test_bad_specs_are_named_errors() -> None:
    with pytest.raises(FixtureSpecError, match="multiple of num_key_value_heads"):
        LlamaShape(64, 64, 128, 2, num_attention_heads=4, num_key_value_heads=3)
    with pytest.raises(FixtureSpecError, match="unknown \\['qkv_proj'\\]"):
        AdapterSpec("bad", TINY_LLAMA, 4, 8, ("qkv_proj",), seed=1)
    with pytest.raises(FixtureSpecError, match="positive"):
        AdapterSpec("bad", TINY_LLAMA, 0, 8, ("q_proj",), seed=1)


def test_a_second_build_rewrites_nothing(root: Path) -> None:
    weights = root / TINY_LLAMA / "model.safetensors"
    marker = root / "adapters" / "tiny-r4" / MARKER
    before = (weights.stat().st_mtime_ns, marker.stat().st_mtime_ns)
    build_fixtures(root, only="tiny")
    assert (weights.stat().st_mtime_ns, marker.stat().st_mtime_ns) == before


def test_cli_failure_is_one_named_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    assert main(["--out", str(not_a_folder), "--only", "tiny"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines()[-1].startswith("[fixtures] error: FileExistsError")
