"""Turn llama32k.model (SentencePiece BPE, byte_fallback) into a tokenizer.json laid out
exactly like Llama-2's: BPE with byte_fallback, Prepend('▁')+Replace(' ','▁') normalizer,
no pre-tokenizer,
Replace/ByteFallback/Fuse/Strip decoder, <unk>/<s>/</s> as special added tokens. Also writes
tokenizer_config.json (</s> the EOS), so the folder serves bench/gpu/make_model.py's
--tokenizer-from."""

import json
import os
import pathlib
import random

import sentencepiece as spm
from tokenizers import AddedToken, Tokenizer, decoders, normalizers
from tokenizers.models import BPE

os.chdir(pathlib.Path(__file__).resolve().parents[3] / ".cache" / "grammar" / "llama32k")
sp = spm.SentencePieceProcessor(model_file="llama32k.model")
n = sp.get_piece_size()
vocab = {sp.id_to_piece(i): i for i in range(n)}
normal = {
    sp.id_to_piece(i): (sp.get_score(i), i)
    for i in range(n)
    if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i))
}
ranked = []
for tok, (score, i) in normal.items():
    for k in range(1, len(tok)):
        left, right = tok[:k], tok[k:]
        if left in normal and right in normal:
            ranked.append((-score, i, left, right))
merges = [(left, right) for _, _, left, right in sorted(ranked)]
t = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
t.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
t.decoder = decoders.Sequence(
    [
        decoders.Replace("▁", " "),
        decoders.ByteFallback(),
        decoders.Fuse(),
        decoders.Strip(" ", 1, 0),
    ]
)
t.add_special_tokens(
    [
        AddedToken("<unk>", normalized=False),
        AddedToken("<s>", normalized=False),
        AddedToken("</s>", normalized=False),
    ]
)
t.save("tokenizer.json")
config = {"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}
pathlib.Path("tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
# sanity: same ids as SentencePiece on sample text

random.seed(1)
txt = pathlib.Path("corpus.txt").read_text()
bad = 0
for _ in range(300):
    s = random.randrange(len(txt) - 200)
    s = txt[s : s + random.randrange(1, 200)]
    a = sp.encode(s)
    b = t.encode(s, add_special_tokens=False).ids
    bad += a != b
print(
    "vocab",
    t.get_vocab_size(),
    "pieces",
    n,
    "byte pieces",
    sum(sp.is_byte(i) for i in range(n)),
    "sp/hf mismatches of 300:",
    bad,
)
print(t.encode('{"a": 1, "b": "ü漢"}\n').tokens)
