"""The model's tokenizer as llguidance reads it: the HF `tokenizer.json` text itself (no
transformers, no hub), sized to the model's vocabulary (lm_head rows past the tokenizer's
ids are never allowed) and with the model's EOS ids (config.json, generation_config.json:
what the engine stops on), which end a finished grammar.

Example:
    tokenizer = grammar_tokenizer("/models/smollm2", vocab_size=49152, eos_ids=[2])
"""

from pathlib import Path

import llguidance


def grammar_tokenizer(
    model_path: str, vocab_size: int, eos_ids: list[int]
) -> llguidance.LLTokenizer:
    path = Path(model_path) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} is missing from the model directory")
    return llguidance.LLTokenizer(
        path.read_text(encoding="utf-8"), n_vocab=vocab_size, eos_token=eos_ids or None
    )
