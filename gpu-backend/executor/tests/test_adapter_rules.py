"""The executor's adapter staging against api/fixtures/adapter-cases.json: the cases the
shared TypeScript rules (gateway upload, backend registration) are held to as well. Each
is written to a directory and parsed as staging parses it; the verdict (rank, scale and
targets, or the rule and the message) must be the fixture's, to the word."""

import base64
import json
from pathlib import Path

import pytest
import torch

from lorafleet_executor.errors import AdapterInvalid
from lorafleet_executor.model.adapters import parse_adapter
from lorafleet_executor.model.config import ModelConfig, RopeConfig

FIXTURE = json.loads(
    (Path(__file__).parents[3] / "api" / "fixtures" / "adapter-cases.json").read_text()
)
BASE = FIXTURE["base"]


def base_model() -> ModelConfig:
    """The fixture's made-up base model: q [8, 8] and k [8, 4] give 4 heads, 2 KV heads of 2."""
    (hidden, q_out), (_, kv_out) = BASE["modules"]["q"], BASE["modules"]["k"]
    head_dim = 2
    cfg = ModelConfig(
        architecture="LlamaForCausalLM",
        hidden_size=hidden,
        intermediate_size=BASE["modules"]["gate"][1],
        num_layers=BASE["numLayers"],
        num_heads=q_out // head_dim,
        num_kv_heads=kv_out // head_dim,
        head_dim=head_dim,
        vocab_size=16,
        rms_norm_eps=1e-5,
        rope=RopeConfig(theta=10000.0, kind="default"),
        max_position=64,
        tie_word_embeddings=False,
        qkv_bias=False,
        eos_token_ids=(2,),
    )
    assert {m: list(s) for m, s in cfg.module_shapes().items()} == BASE["modules"]
    return cfg


def write(case: dict, root: Path) -> Path:
    root.mkdir()
    for name, key in (("adapter_config.json", "config"), ("adapter_model.safetensors", "weights")):
        if case[key] is not None:
            (root / name).write_bytes(base64.b64decode(case[key]))
    if case["pickle"]:
        (root / "adapter_model.bin").write_bytes(b"\x80\x04not really a pickle")
    return root


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=[c["name"] for c in FIXTURE["cases"]])
def test_staging_judges_as_the_shared_rules(case, tmp_path):
    path = write(case, tmp_path / "adapter")
    try:
        adapter = parse_adapter(1, path, base_model(), BASE["maxRank"], torch.float32)
        verdict = {"rank": adapter.rank, "scale": adapter.scale, "targets": adapter.targets}
    except AdapterInvalid as error:
        verdict = {"code": error.rule, "message": error.message}
    assert verdict == case["expect"]


def test_every_rule_is_in_the_fixture():
    """A rule the fixture never breaks is a rule nobody holds the two languages to."""
    codes = {c["expect"]["code"] for c in FIXTURE["cases"] if "code" in c["expect"]}
    assert codes == {
        "missing_file",
        "adapter_too_large",
        "adapter_config_invalid_json",
        "adapter_config_invalid",
        "unsupported_adapter_feature",
        "rank_too_large",
        "scale_out_of_range",
        "unsupported_target_module",
        "pickle_not_accepted",
        "safetensors_truncated",
        "safetensors_header_too_large",
        "safetensors_bad_header",
        "safetensors_bad_tensor",
        "safetensors_offsets_mismatch",
        "unexpected_tensor",
        "shape_mismatch",
        "unsupported_dtype",
        "missing_tensor",
        "non_finite_weights",
        "weights_out_of_range",
    }
