"""Build an offline Llama-2-like tokenizer: SentencePiece BPE, 32000 pieces, byte_fallback,
<unk>=0 <s>=1 </s>=2, <0x00>..<0xFF> byte pieces, digits split; converted to tokenizer.json
by to_tokenizer_json.py into the layout of Llama-2's tokenizer.json.

    python bench/grammar/llama32k/build_llama32k.py      # writes into .cache/grammar/llama32k
    python bench/grammar/llama32k/to_tokenizer_json.py

The corpus is ~60 MB of text found on the machine (vim's docs, the Python standard library,
/usr/share/doc and the repo's Markdown), so the merges depend on the machine; the layout
(and what the benchmarks measure of it: a 32k byte-fallback BPE vocabulary) does not.
Needs `pip install sentencepiece tokenizers`.
"""

import glob
import os
import pathlib
import random
import sysconfig

import sentencepiece as spm

REPO = pathlib.Path(__file__).resolve().parents[3]
OUT = REPO / ".cache" / "grammar" / "llama32k"
OUT.mkdir(parents=True, exist_ok=True)
os.chdir(OUT)

random.seed(0)
stdlib = sysconfig.get_paths()["stdlib"]
files = glob.glob("/usr/share/vim/vim*/doc/*.txt") + glob.glob(f"{stdlib}/**/*.py", recursive=True)
files += glob.glob("/usr/share/doc/**/*.md", recursive=True)
files += glob.glob(f"{REPO}/**/*.md", recursive=True)
random.shuffle(files)
total = 0
with open("corpus.txt", "w") as out:
    for f in files:
        if "node_modules" in f:
            continue
        try:
            t = pathlib.Path(f).read_text(encoding="utf-8")
        except Exception:
            continue
        out.write(t + "\n")
        total += len(t)
        if total > 60_000_000:
            break
print("corpus chars", total)
spm.SentencePieceTrainer.train(
    input="corpus.txt",
    model_prefix="llama32k",
    model_type="bpe",
    vocab_size=32000,
    byte_fallback=True,
    split_digits=True,
    character_coverage=0.99995,
    input_sentence_size=1_500_000,
    shuffle_input_sentence=True,
    num_threads=2,
    unk_id=0,
    bos_id=1,
    eos_id=2,
    pad_id=-1,
    add_dummy_prefix=True,
    remove_extra_whitespaces=False,
    normalization_rule_name="identity",
    allow_whitespace_only_pieces=True,
    max_sentence_length=100000,
    train_extremely_large_corpus=False,
)
# tokenizer.json: see to_tokenizer_json.py (transformers 5's
# LlamaTokenizerFast(vocab_file=) did not convert it)
