"""Build each engine's tokenizer info from a bare HF tokenizer.json (no hub), plus the model's
vocab_size (lm_head rows) and EOS id, which tokenizer.json itself does not carry."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(REPO, ".cache", "fixtures")
# made by llama32k/build_llama32k.py (see README.md "llama32k")
LLAMA32K = os.path.join(REPO, ".cache", "grammar", "llama32k")
# name -> (tokenizer.json, model vocab_size, eos ids)
TOKENIZERS = {
    # SmolLM2: eos = <|im_end|> (generation_config.json eos_token_id=2)
    "smollm2": (f"{FIX}/smollm2-135m-instruct/tokenizer.json", 49152, [2]),
    "tiny": (f"{FIX}/tiny-llama/tokenizer.json", 512, [2]),
    # offline Llama-2-like SentencePiece BPE with byte_fallback (llama32k/to_tokenizer_json.py)
    "llama32k": (f"{LLAMA32K}/tokenizer.json", 32000, [2]),
}


def llg_tokenizer(name):
    import llguidance

    path, n_vocab, eos = TOKENIZERS[name]
    # LLTokenizer takes the tokenizer.json text itself (what llguidance.hf passes after to_str()).
    return llguidance.LLTokenizer(open(path).read(), n_vocab=n_vocab, eos_token=eos)


def xgr_tokenizer_info(name, via="tokenizers"):
    import xgrammar as xgr

    path, n_vocab, eos = TOKENIZERS[name]
    if via == "transformers":
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast(tokenizer_file=path)
        return xgr.TokenizerInfo.from_huggingface(tok, vocab_size=n_vocab, stop_token_ids=eos)
    # Without transformers objects: vocab from tokenizers, vocab type / prefix-space detected by
    # xgrammar's own C++ detector on the serialized tokenizer (same as from_huggingface does).
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    vocab = tok.get_vocab(with_added_tokens=True)
    encoded = [""] * n_vocab
    for t, i in vocab.items():
        if i < n_vocab:
            encoded[i] = t
    meta = xgr.TokenizerInfo._detect_metadata_from_hf(tok.to_str())
    return xgr.TokenizerInfo(
        encoded,
        vocab_type=meta["vocab_type"],
        vocab_size=n_vocab,
        stop_token_ids=eos,
        add_prefix_space=meta["add_prefix_space"],
    )


def hf_tokenizer(name):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(TOKENIZERS[name][0])
