#!/usr/bin/env python3
"""Builds tiny random-weight model fixtures with reference outputs, offline.

    target/compare-venv/bin/python scripts/reference/synthetic.py

Needs torch, transformers, sentence-transformers, tokenizers, safetensors and
numpy in the venv (benches/compare.sh makes it). Nothing is downloaded: the
tokenizers are learnt here on CORPUS below and built as `tokenizers` objects
(normalizers, pre-tokenizers, WordPiece/BPE/Unigram models, templates), and
the models are random-initialised from configs. Deterministic: fixed seeds,
one torch thread, and vocabularies learnt by small routines in this file with
ties broken by string order, because the trainers of the `tokenizers` library
(WordPieceTrainer, UnigramTrainer) give a different vocabulary or different
scores in every process. A re-run rewrites byte-identical files (about 8 s).

Writes one directory per fixture under tests/fixtures/models/, each a loadable
Hugging Face layout (config.json, model.safetensors in float32, tokenizer.json,
tokenizer_config.json, and for embedding models the sentence-transformers files
modules.json, sentence_bert_config.json, config_sentence_transformers.json,
1_Pooling/config.json) plus reference.json with the expected outputs:

- tiny-xlm-roberta: XLMRobertaModel, SentencePiece-style Unigram tokenizer,
  mean pooling + Normalize, max_seq_length 64, "query: "/"passage: " prompts.
- tiny-mpnet: MPNetModel, WordPiece, mean pooling + Normalize, max_seq_length
  128 (the long text reaches relative distances beyond 16 and 64).
- tiny-bert-lasttoken: BertModel, WordPiece, last-token pooling + Normalize,
  max_seq_length 32; also CLS-pooled numbers.
- tiny-bert-reranker: BertForSequenceClassification (num_labels 1), logits of
  (query, document) pairs.
- tiny-xlm-roberta-reranker: XLMRobertaForSequenceClassification (num_labels 1).
- tiny-distilbert: DistilBertModel, WordPiece, mean pooling + Normalize,
  max_seq_length 32.
- tiny-modernbert: ModernBertModel (layer 0 global, layer 1 local attention
  with a 16-token window), byte-level BPE with specials at the end of the
  vocabulary and a padded embedding matrix, mean pooling + Normalize,
  max_seq_length 48.

Each reference.json says in `notes` how its numbers were made, in `generator`
which library versions made them, and in `stats` the sanity checks (one text
at a time vs one padded batch, sentence-transformers vs plain transformers).
The script ends by reloading every fixture from disk and checking that the
stored ids and numbers reproduce; it exits non-zero if they do not.
"""
import os

# Keep the machine quiet: set before torch and `tokenizers` are imported.
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import sentence_transformers  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from sentence_transformers import CrossEncoder, SentenceTransformer  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # noqa: E402
from transformers import (  # noqa: E402
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
    MPNetConfig,
    MPNetModel,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaModel,
)

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/fixtures/models"
SCRIPT = "scripts/reference/synthetic.py"

# Tiny shapes shared by every model.
HIDDEN, LAYERS, HEADS, INTERMEDIATE = 32, 2, 4, 64
# Random init used instead of transformers' (std 0.02 makes attention nearly
# uniform and LayerNorm an identity, which would hide bugs): every matrix
# (embeddings, linear weights) ~ N(0, 0.2^2), every 1-D weight (LayerNorm
# gamma) ~ 1 + N(0, 0.1^2), every bias ~ N(0, 0.1^2).
INIT = "matrices N(0, 0.2^2); 1-D weights (norm gammas) 1 + N(0, 0.1^2); biases N(0, 0.1^2); torch.manual_seed(seed) first"

# --------------------------------------------------------------------------
# Training corpus for the tokenizers (a few KB, English plus some German and
# French so the vocabularies hold non-ASCII pieces).
# --------------------------------------------------------------------------
CORPUS = """\
The quick brown fox jumps over the lazy dog.
A journey of a thousand miles begins with a single step.
Machine learning models turn sentences into vectors of numbers.
Sentence embeddings let us search documents by meaning, not by keywords.
The weather today is sunny with a light breeze from the west.
She bought three apples, two bananas and a loaf of bread at the market.
Please call me back at 555-0123 before 9:30 tomorrow morning.
The meeting was moved from Monday, March 4th to Friday, March 8th, 2024.
In 1969, astronauts walked on the Moon for the first time.
Prices rose by 12.5% last year; rent alone went up $250 a month.
Foxes hunt at night, listening for mice moving under the snow.
Dogs are loyal companions, and cats are independent hunters.
The library opens at 8 a.m. and closes at 10 p.m. on weekdays.
Water boils at 100 degrees Celsius at sea level.
Rust is a systems programming language focused on safety and speed.
Python is popular for data science, scripting and machine learning.
Batching many requests together makes inference on a CPU much faster.
Padding tokens must be ignored by attention and by mean pooling.
Tokenizers split text into words, subwords and sometimes single characters.
The train leaves from platform 7 at 14:45; don't be late!
He said, "I'll be there in 5 minutes," but he arrived an hour later.
What time is it? It's a quarter past eleven.
The river flows north through the valley and into the great lake.
Our team won the match 3-2 after extra time.
The recipe needs 250 grams of flour, 2 eggs and 100 ml of milk.
Scientists discovered a new species of frog in the rainforest.
The old castle on the hill was built in the twelfth century.
Reading books before bed helps many people fall asleep.
Cloud servers store backups in three different regions.
An apple a day keeps the doctor away, or so they say.
The museum shows paintings, sculptures and ancient coins.
Children played in the park until the sun went down.
Search engines rank pages by relevance to the query.
A reranker scores each query and document pair directly.
The cafe serves croissants, espresso and a famous creme brulee.
We visited the cafe, ordered a crème brûlée and a café au lait.
Her résumé listed a naïve project about façade design and déjà vu.
The piñata at the fiesta was full of candy for the niño.
Zoë and Chloë met Renée at the coöperative in Provence.
Numbers like 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 42 appear everywhere.
Email support@example.com or visit https://example.com/help for details.
Version 2.0.1 fixed a bug where long inputs were truncated too early.
The quick fox, the lazy dog; the end.
Hello, world! Hello again, world.
Question: how do foxes hunt? Answer: they listen carefully.
Vectors are compared with the cosine similarity or the dot product.
Mean pooling averages the token vectors that are not padding.
Normalization scales every embedding to unit length.
Die Straße in München ist schön und im Sommer sehr belebt.
Das Mädchen läuft schnell über die Brücke zum Bahnhof.
Wir trinken Kaffee und essen Kuchen mit Sahne am Nachmittag.
Grüße aus Köln, wo die Häuser alt und die Gärten grün sind.
Ich möchte ein Glas Wasser, bitte, und danach die Rechnung.
L'été à Paris était magnifique et très chaud cette année.
Où est la bibliothèque ? Elle est près de la gare, à gauche.
Les élèves étudient le français, l'histoire et les mathématiques.
Ça va très bien, merci ! Et vous, comment ça va ?
Le garçon a mangé une pêche et une crêpe au château.
Noël approche et les rues sont décorées de lumières.
El niño come una manzana en la mañana; ¿dónde está el café?
"""

LONG_TEXT = (
    "Long ago, in a quiet village between the mountains and the sea, there lived an old clockmaker "
    "who repaired every clock in the valley. Each morning he opened his small shop at 7:15, brewed a "
    "cup of strong coffee, and listened to the ticking of two hundred clocks. Travelers from Köln, "
    "Paris and Zürich brought him broken watches, cuckoo clocks and even a crème-colored music box "
    "that played a waltz. He never advertised, yet people always found him, because the clocks he "
    "fixed kept perfect time for years. When the village children asked how he did it, he smiled and "
    "said that patience, careful hands and a good lamp were worth more than any machine. One winter "
    "night, a storm knocked out the power, and every digital clock in the valley went dark; only his "
    "mechanical clocks kept ticking, and the whole village gathered in his shop to learn the hour. "
    "The next spring, 42 apprentices wrote letters asking to study with him, and he accepted three."
)

TEXTS = [
    "",
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    "Café crème brûlée, naïve façade — déjà vu! 😀🚀",
    "Die Straße in München ist schön; l'été à Paris était magnifique.",
    "Order #4521 shipped on 2024-03-15 at 09:30 for $1,299.99 (20% off).",
    "ＦＵＬＬＷＩＤＴＨ ﬁle and ligatures",
    "   spaces   around\tand\nnewlines   ",
    "Machine learning models turn sentences into vectors.",
    "漢字 and ✓ symbols: ∑ ≠ ∞",
    LONG_TEXT,
]

QUERY = "How do foxes hunt at night?"
DOCUMENTS = [
    "",
    "Foxes hunt at night, listening for mice moving under the snow.",
    "The recipe needs 250 grams of flour, 2 eggs and 100 ml of milk.",
    "Le renard chasse la nuit ; il écoute les souris sous la neige. 🦊",
    "Opening hours: 8 a.m. to 10 p.m., Monday-Friday (closed 2024-12-25).",
    LONG_TEXT,
]

PROMPTS = {"query": "query: ", "passage": "passage: "}


def corpus_lines():
    return [line for line in CORPUS.splitlines() if line.strip()]


# --------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------
# The trainers of the `tokenizers` library are not reproducible from one
# process to the next (Rust HashMaps with random seeds decide ties between
# equal counts, and the Unigram EM sums floats in hash order): run twice, the
# WordPiece vocabulary and the Unigram scores differ. So the vocabularies are
# learnt here by small deterministic routines (ties broken by string order),
# on text normalised and pre-tokenised by the `tokenizers` components
# themselves, and the tokenizers are then assembled from `tokenizers` models
# (WordPiece(vocab), BPE(vocab, merges), Unigram(vocab)).


def pretokenized_words(normalizer, pre_tokenizer):
    """Word counts of CORPUS after the tokenizer's own normalizer and
    pre-tokenizer, in first-seen order."""
    words = {}
    for line in corpus_lines():
        text = normalizer.normalize_str(line) if normalizer is not None else line
        for w, _ in pre_tokenizer.pre_tokenize_str(text):
            words[w] = words.get(w, 0) + 1
    return words


def learn_merges(words, split, join, budget):
    """BPE merges: repeatedly merge the most frequent adjacent pair (ties: the
    smallest (left, right) strings) until `budget` new symbols exist."""
    segs = {w: split(w) for w in words}
    merges = []
    while len(merges) < budget:
        pairs = {}
        for w, n in words.items():
            s = segs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merged = join(*best)
        merges.append((best, merged))
        for w, s in segs.items():
            i, out = 0, []
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            segs[w] = out
    return merges


def viterbi(word, logp, max_len):
    """Best segmentation of `word` under piece log-probabilities `logp`."""
    n = len(word)
    best = [(-float("inf"), None)] * (n + 1)
    best[0] = (0.0, None)
    for i in range(1, n + 1):
        for j in range(max(0, i - max_len), i):
            piece = word[j:i]
            if piece in logp and best[j][0] > -float("inf"):
                score = best[j][0] + logp[piece]
                if score > best[i][0]:
                    best[i] = (score, j)
    if best[n][0] == -float("inf"):
        return None, -float("inf")
    pieces, i = [], n
    while i > 0:
        j = best[i][1]
        pieces.append(word[j:i])
        i = j
    return pieces[::-1], best[n][0]


def learn_unigram(words, size, max_len):
    """A small SentencePiece-style Unigram: candidates are every character and
    every substring (up to max_len) seen at least twice, scored by
    frequency x length; then rounds of hard (Viterbi) EM and pruning of the
    pieces whose removal costs the least likelihood, until `size` pieces are
    left. Returns [(piece, log-prob)] best first (ties: string order)."""
    chars = sorted({c for w in words for c in w})
    freq = {}
    for w, n in words.items():
        for i in range(len(w)):
            for j in range(i + 2, min(len(w), i + max_len) + 1):
                freq[w[i:j]] = freq.get(w[i:j], 0) + n
    cands = sorted((s for s, f in freq.items() if f >= 2), key=lambda s: (-freq[s] * len(s), s))[: 4 * size]
    char_freq = {c: sum(n * w.count(c) for w, n in words.items()) for c in chars}
    weights = {**{c: char_freq[c] for c in chars}, **{s: freq[s] * len(s) for s in cands}}
    total = sum(weights.values())
    logp = {p: float(np.log(v / total)) for p, v in weights.items()}

    def em(logp):
        counts = {p: 0 for p in logp}
        for w, n in words.items():
            for p in viterbi(w, logp, max_len)[0]:
                counts[p] += n
        total = sum(counts.values())
        floor = float(np.log(0.5 / total))
        new = {}
        for p, c in counts.items():
            if c > 0:
                new[p] = float(np.log(c / total))
            elif len(p) == 1:
                new[p] = floor  # every character stays reachable
        return new, counts

    while True:
        for _ in range(2):
            logp, counts = em(logp)
        multi = [p for p in logp if len(p) > 1]
        if len(logp) <= size:
            break
        loss = {}
        for p in multi:
            others = {q: v for q, v in logp.items() if q != p}
            alt = viterbi(p, others, max_len)[1]
            loss[p] = counts[p] * (logp[p] - alt)
        keep_n = max(size - (len(logp) - len(multi)), int(len(multi) * 0.8))
        keep = set(sorted(multi, key=lambda p: (-loss[p], p))[:keep_n])
        logp = {p: v for p, v in logp.items() if len(p) == 1 or p in keep}
    return sorted(logp.items(), key=lambda kv: (-kv[1], kv[0]))


def train_unigram():
    """SentencePiece-style Unigram as XLM-R ships it: NFKC + collapse runs of
    spaces, Metaspace, <s> $A </s>; specials <s>=0 <pad>=1 </s>=2 <unk>=3 and
    <mask> appended after the learnt pieces (as XLM-R has it last)."""
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    pieces = learn_unigram(pretokenized_words(normalizer, pre), 300 - len(specials), max_len=12)
    vocab = [(s, 0.0) for s in specials] + pieces
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.add_special_tokens(specials + ["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    assert len(pieces) == 296 and tok.token_to_id("<mask>") == 300  # as TOKENIZER_NOTES says
    return tok


def train_wordpiece(specials, unk, vocab_size, single, pair, template_specials, tail_specials=()):
    """BERT-style WordPiece: BertNormalizer (lowercase, which strips accents
    too), BertPreTokenizer, WordPiece decoder. Vocabulary: the specials, every
    character both as a word start and as a "##" continuation, then BPE-style
    merges as WordPieceTrainer makes them."""
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words = pretokenized_words(normalizer, pre)
    chars = sorted({c for w in words for c in w})
    alphabet = chars + ["##" + c for c in chars]
    merges = learn_merges(
        words,
        split=lambda w: [w[0]] + ["##" + c for c in w[1:]],
        join=lambda a, b: a + b[2:],
        budget=vocab_size - len(specials) - len(alphabet),
    )
    vocab = {}
    for t in list(specials) + alphabet + [m for _, m in merges]:
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(list(specials) + list(tail_specials))
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, tok.token_to_id(t)) for t in template_specials]
    )
    return tok


def train_bert_wordpiece():
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = train_wordpiece(
        specials, "[UNK]", 320,
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        template_specials=["[CLS]", "[SEP]"],
    )
    assert [tok.token_to_id(t) for t in specials] == [0, 1, 2, 3, 4]
    return tok


def train_mpnet_wordpiece():
    tok = train_wordpiece(
        ["<s>", "<pad>", "</s>", "[UNK]"], "[UNK]", 320,
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        template_specials=["<s>", "</s>"],
        tail_specials=["<mask>"],
    )
    assert [tok.token_to_id(t) for t in ["<s>", "<pad>", "</s>", "[UNK]"]] == [0, 1, 2, 3]
    return tok


def train_bytelevel_bpe():
    """ModernBERT-style byte-level BPE: no normalizer, ByteLevel pre-tokenizer
    without prefix space, the 256 byte symbols then the merges, specials
    appended after them (ModernBERT keeps them at 50280..50284), [CLS] $A [SEP]."""
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    words = pretokenized_words(None, pre)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = learn_merges(words, split=list, join=lambda a, b: a + b, budget=420 - len(alphabet))
    vocab = {}
    for t in alphabet + [m for _, m in merges]:
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.BPE(vocab, [p for p, _ in merges]))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    assert len(merges) == 164 and tok.token_to_id("[UNK]") == 420  # as TOKENIZER_NOTES says
    return tok


def save_tokenizer(raw, path, model_max_length, model_input_names, **specials):
    """Wraps a trained `tokenizers.Tokenizer` in PreTrainedTokenizerFast and
    saves it (tokenizer.json, tokenizer_config.json, special tokens). The
    backend tokenizer has no truncation or padding set."""
    raw = Tokenizer.from_str(raw.to_str())
    raw.no_truncation()
    raw.no_padding()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        model_max_length=model_max_length,
        model_input_names=model_input_names,
        clean_up_tokenization_spaces=False,
        **specials,
    )
    fast.save_pretrained(str(path))
    return fast


XLMR_SPECIALS = dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
MPNET_SPECIALS = dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", pad_token="<pad>", unk_token="[UNK]", mask_token="<mask>")
BERT_SPECIALS = dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]")
MODERNBERT_SPECIALS = dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]")


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------
def randomize(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.2)
            elif p.ndim == 1 and _.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.1)
    model.eval()
    return model


def build_model(cls, config, seed, path):
    torch.manual_seed(seed)
    model = randomize(cls(config), seed)
    model = model.to(torch.float32)
    # transformers 5 always writes safetensors (the `safe_serialization`
    # argument is gone); model.safetensors holds float32 tensors.
    model.save_pretrained(str(path))
    return model


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


POOLING_KEYS = ["cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken"]


def write_st_files(path, max_seq_length, pooling, prompts=None):
    """sentence-transformers layout with the classic (v2/v3) module names and
    legacy pooling keys, as the models on the Hub have them."""
    write_json(path / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(path / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    cfg = {"word_embedding_dimension": HIDDEN}
    for k in POOLING_KEYS:
        cfg["pooling_mode_" + k] = k == pooling
    cfg["include_prompt"] = True
    write_json(path / "1_Pooling/config.json", cfg)
    st = {
        "__version__": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "pytorch": torch.__version__,
        },
        "prompts": prompts or {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    }
    write_json(path / "config_sentence_transformers.json", st)


# --------------------------------------------------------------------------
# Reference computation
# --------------------------------------------------------------------------
TOKENIZER_NOTES = {
    "unigram": "tokenizer: Unigram learnt by learn_unigram() in this script (296 pieces + <s> <pad> </s> <unk> at 0..3, "
               "<mask> last), normalizer Sequence[NFKC, Replace(' {2,}' -> ' ')], Metaspace (prepend_scheme always), "
               "TemplateProcessing <s> $A </s> / <s> $A </s> </s> $B </s>; characters not in the corpus become <unk>",
    "bert": "tokenizer: WordPiece learnt by train_wordpiece() in this script ([PAD] [UNK] [CLS] [SEP] [MASK] at 0..4), "
            "BertNormalizer lowercase (accents stripped), BertPreTokenizer, TemplateProcessing [CLS] $A [SEP] / "
            "[CLS] $A [SEP] $B:1 [SEP]:1",
    "mpnet": "tokenizer: WordPiece learnt by train_wordpiece() in this script (<s> <pad> </s> [UNK] at 0..3, <mask> last), "
             "BertNormalizer lowercase, BertPreTokenizer, TemplateProcessing <s> $A </s> / <s> $A </s> </s> $B </s>",
    "bpe": "tokenizer: byte-level BPE learnt by learn_merges() in this script (256 byte symbols, 164 merges, then "
           "[UNK] [CLS] [SEP] [PAD] [MASK] at 420..424), no normalizer, ByteLevel(add_prefix_space=false), "
           "TemplateProcessing [CLS] $A [SEP]",
}


def generator():
    return {
        "script": SCRIPT,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }


def floats(a):
    return [float(x) for x in np.asarray(a, dtype=np.float32).reshape(-1)]


def max_abs(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def load_st(path, **model_kwargs):
    kw = {"model_kwargs": model_kwargs} if model_kwargs else {}
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True, **kw)
    model.eval()
    return model


def st_ids(model, texts, prompt=None):
    out = []
    for t in texts:
        f = model.preprocess([t], prompt=prompt)
        mask = f["attention_mask"][0].bool()
        out.append([int(i) for i in f["input_ids"][0][mask]])
    return out


def st_encode(model, texts, **kw):
    return [floats(model.encode([t], batch_size=1, convert_to_numpy=True, normalize_embeddings=True, **kw)[0]) for t in texts]


def manual_mean(path, texts, max_len, prompt="", attn=None):
    """Oracle without sentence-transformers: tokenizers.Tokenizer.from_file,
    AutoModel, mean over the attention mask, L2 normalise."""
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_truncation(max_len)
    kw = {"attn_implementation": attn} if attn else {}
    model = AutoModel.from_pretrained(str(path), local_files_only=True, **kw).eval()
    out = []
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([tok.encode(prompt + t).ids])
            h = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
            v = h.mean(0)
            out.append(floats(v / v.norm().clamp_min(1e-12)))
    return out


def embedding_reference(name, path, max_seq_length, pooling, tokenizer, prompts=None, attn=None, extra_notes=()):
    kw = {"attn_implementation": attn} if attn else {}
    model = load_st(path, **kw)
    assert model.max_seq_length == max_seq_length, (model.max_seq_length, max_seq_length)
    ids = st_ids(model, TEXTS)
    emb = st_encode(model, TEXTS)
    batched = model.encode(TEXTS, batch_size=len(TEXTS), convert_to_numpy=True, normalize_embeddings=True)
    config = json.loads((path / "config.json").read_text())
    stats = {
        "max_abs_diff_batch1_vs_one_padded_batch": max_abs(emb, batched),
        "token_count_long_text_untruncated": len(Tokenizer.from_file(str(path / "tokenizer.json")).encode(LONG_TEXT).ids),
    }
    notes = [
        f"random weights: {INIT}",
        TOKENIZER_NOTES[tokenizer],
        "embeddings[i]: SentenceTransformer(dir, device='cpu').encode([texts[i]], batch_size=1, normalize_embeddings=True)[0], float32 on CPU, one torch thread",
        "input_ids[i]: SentenceTransformer.preprocess([texts[i]]) input_ids where attention_mask is 1: special tokens included, after truncation to max_seq_length, no padding",
        f"max_seq_length {max_seq_length} from sentence_bert_config.json; tokenizer_config.json model_max_length is the model's position capacity",
        f"pooling: {pooling} (1_Pooling/config.json, include_prompt true), then Normalize",
        "stats.max_abs_diff_batch1_vs_one_padded_batch: encode(texts, batch_size=len(texts)) (sorted by length, right-padded) vs one text at a time",
    ]
    notes.extend(extra_notes)
    ref = {
        "fixture": name,
        "model_type": config["model_type"],
        "max_seq_length": max_seq_length,
        "embedding_dim": HIDDEN,
        "pooling": pooling,
        "normalize": True,
        "notes": notes,
        "generator": generator(),
        "stats": stats,
        "texts": TEXTS,
        "token_counts": [len(i) for i in ids],
        "input_ids": ids,
        "embeddings": emb,
    }
    if pooling == "mean":
        manual = manual_mean(path, TEXTS, max_seq_length, attn=attn)
        stats["max_abs_diff_sentence_transformers_vs_manual_mean"] = max_abs(emb, manual)
        notes.append("stats.max_abs_diff_sentence_transformers_vs_manual_mean: vs tokenizers.Tokenizer.from_file + AutoModel last_hidden_state, mean, L2-normalised")
    if prompts:
        for pname, ptext in prompts.items():
            ref[f"{pname}_input_ids"] = st_ids(model, TEXTS, prompt=ptext)
            ref[pname] = st_encode(model, TEXTS, prompt_name=pname)
            plain = st_encode(model, [ptext + t for t in TEXTS])
            stats[f"max_abs_diff_prompt_name_{pname}_vs_prefixed_text"] = max_abs(ref[pname], plain)
        notes.append(
            "query/passage: encode([texts[i]], batch_size=1, prompt_name='query'/'passage', normalize_embeddings=True) "
            "with config_sentence_transformers.json prompts {query: 'query: ', passage: 'passage: '}; "
            "query_input_ids/passage_input_ids are the ids of the prompted text (prompt + text, then truncation); "
            "the prompt tokens are included in the mean (include_prompt true)"
        )
    return model, ref


def model_inputs(ids, types, with_token_types, pad_id):
    """Right-padded tensors for a list of id lists."""
    n = max(len(i) for i in ids)
    x = torch.full((len(ids), n), pad_id, dtype=torch.long)
    t = torch.zeros((len(ids), n), dtype=torch.long)
    m = torch.zeros((len(ids), n), dtype=torch.long)
    for row, (i, ty) in enumerate(zip(ids, types)):
        x[row, : len(i)] = torch.tensor(i)
        t[row, : len(ty)] = torch.tensor(ty)
        m[row, : len(i)] = 1
    out = {"input_ids": x, "attention_mask": m}
    if with_token_types:
        out["token_type_ids"] = t
    return out


def reranker_reference(name, path, with_token_types, tokenizer):
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    raw = Tokenizer.from_file(str(path / "tokenizer.json"))
    raw.enable_truncation(64, strategy="longest_first")
    model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True).eval()
    pad_id = model.config.pad_token_id
    pairs = [(QUERY, d) for d in DOCUMENTS]
    ids, types, logits = [], [], []
    hf_differs = []
    with torch.no_grad():
        for k, (q, d) in enumerate(pairs):
            r = raw.encode(q, d)
            ids.append(list(r.ids))
            types.append(list(r.type_ids))
            if not with_token_types:
                assert set(r.type_ids) == {0}
            enc = tok(q, d, truncation="longest_first", max_length=64)
            same = enc["input_ids"] == r.ids and (not with_token_types or enc["token_type_ids"] == r.type_ids)
            if not with_token_types:
                assert "token_type_ids" not in enc
            listed = tok([q], [d], truncation="longest_first", max_length=64)
            assert listed["input_ids"][0] == r.ids, (name, d)
            if not same:
                hf_differs.append({"index": k, "document": d, "transformers_input_ids": enc["input_ids"],
                                   "transformers_logit": float(model(**tok(q, d, truncation="longest_first", max_length=64, return_tensors="pt")).logits[0, 0])})
            logits.append(float(model(**model_inputs([r.ids], [r.type_ids], with_token_types, pad_id)).logits[0, 0]))
        batched = model(**model_inputs(ids, types, with_token_types, pad_id)).logits[:, 0]
    stats = {
        "max_abs_diff_pair1_vs_one_padded_batch": max_abs(logits, batched.numpy()),
        "token_count_long_pair_untruncated": len(Tokenizer.from_file(str(path / "tokenizer.json")).encode(QUERY, LONG_TEXT).ids),
        "transformers_tokenizer_differs_for_documents": [h["index"] for h in hf_differs],
    }
    notes = [
        f"random weights: {INIT}",
        TOKENIZER_NOTES[tokenizer],
        "pairs_input_ids/pairs_token_type_ids: tokenizers.Tokenizer.from_file(tokenizer.json) with "
        "enable_truncation(64, strategy='longest_first'), encode(query, documents[i]) (the pair template), no padding",
        "logits[i]: AutoModelForSequenceClassification(dir) (num_labels 1, raw logit, no activation) on exactly those ids "
        "(attention_mask all 1" + (", token_type_ids as stored" if with_token_types else ", no token_type_ids passed") +
        "), one pair at a time, float32 CPU",
        "transformers' tokenizer([query], [document], truncation='longest_first', max_length=64) gives the same ids for every "
        "document; the single-pair call tokenizer(query, '') does not: an empty text_pair is falsy, so it encodes the query "
        "alone without the second separator (see transformers_tokenizer_empty_document; not what the references use)",
        "scores_sigmoid[i]: sigmoid(logits[i]), what CrossEncoder.predict returns by default for num_labels 1",
        "stats.max_abs_diff_pair1_vs_one_padded_batch: one right-padded batch of all pairs vs one pair at a time",
    ]
    try:
        ce = CrossEncoder(str(path), device="cpu", local_files_only=True)
        ce_logits = ce.predict(pairs, batch_size=1, activation_fn=torch.nn.Identity(), convert_to_numpy=True)
        ce_batch = ce.predict(pairs, batch_size=len(pairs), activation_fn=torch.nn.Identity(), convert_to_numpy=True)
        stats["max_abs_diff_crossencoder_batch1_vs_logits"] = max_abs(ce_logits, logits)
        stats["max_abs_diff_crossencoder_one_batch_vs_logits"] = max_abs(ce_batch, logits)
        stats["crossencoder_max_length"] = ce.max_seq_length
        notes.append(
            "stats.max_abs_diff_crossencoder_*: sentence_transformers CrossEncoder(dir).predict(pairs, "
            "activation_fn=torch.nn.Identity(), batch_size=1 or len(pairs)) vs logits, all documents (CrossEncoder "
            "encodes the empty document as a pair, like tokenizers); crossencoder_max_length is what it read from the directory"
        )
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        stats["crossencoder_error"] = f"{type(e).__name__}: {e}"
    config = json.loads((path / "config.json").read_text())
    return {
        "fixture": name,
        "model_type": config["model_type"],
        "architecture": config["architectures"][0],
        "max_length": 64,
        "truncation": "longest_first",
        "notes": notes,
        "generator": generator(),
        "stats": stats,
        "query": QUERY,
        "documents": DOCUMENTS,
        "pairs_input_ids": ids,
        "pairs_token_type_ids": types,
        "logits": logits,
        "scores_sigmoid": [float(1.0 / (1.0 + np.exp(-x))) for x in logits],
        "transformers_tokenizer_empty_document": hf_differs,
    }


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------
def fresh(name):
    path = OUT / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def xlmr_config(vocab, **kw):
    return XLMRobertaConfig(
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE, hidden_act="gelu", max_position_embeddings=66, type_vocab_size=1,
        layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2, **kw,
    )


def bert_config(vocab, **kw):
    return BertConfig(
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE, hidden_act="gelu", max_position_embeddings=64, type_vocab_size=2,
        pad_token_id=0, **kw,
    )


def fixture_xlmr(unigram):
    name = "tiny-xlm-roberta"
    path = fresh(name)
    save_tokenizer(unigram, path, 64, ["input_ids", "attention_mask"], **XLMR_SPECIALS)
    build_model(XLMRobertaModel, xlmr_config(unigram.get_vocab_size()), 101, path)
    write_st_files(path, 64, "mean_tokens", prompts=PROMPTS)
    _, ref = embedding_reference(name, path, 64, "mean", "unigram", prompts=PROMPTS, extra_notes=[
        "XLM-R positions: transformers numbers real tokens padding_idx + 1 + k = 2, 3, ... (cumsum of non-pad mask); "
        "pad tokens get position 1; max_position_embeddings 66 = 64 tokens + offset 2",
        "token_type_ids: type_vocab_size 1, all zeros (tokenizer does not return them)",
    ])
    write_json(path / "reference.json", ref)
    return name


def fixture_mpnet(wordpiece):
    name = "tiny-mpnet"
    path = fresh(name)
    save_tokenizer(wordpiece, path, 128, ["input_ids", "attention_mask"], **MPNET_SPECIALS)
    config = MPNetConfig(
        vocab_size=wordpiece.get_vocab_size(), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, intermediate_size=INTERMEDIATE, hidden_act="gelu",
        max_position_embeddings=130, relative_attention_num_buckets=32, layer_norm_eps=1e-5,
        pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )
    build_model(MPNetModel, config, 102, path)
    write_st_files(path, 128, "mean_tokens")
    _, ref = embedding_reference(name, path, 128, "mean", "mpnet", extra_notes=[
        "MPNet positions: like RoBERTa, padding_idx + 1 + k = 2, 3, ...; max_position_embeddings 130 = 128 tokens + offset 2",
        "MPNet relative attention bias: one table encoder.relative_attention_bias [32 buckets, 4 heads] shared by all "
        "layers, bucket of (key position - query position) from MPNetEncoder.relative_position_bucket (bidirectional, "
        "max_distance 128); the long text is truncated to 128 tokens, so distances up to 127 occur",
    ])
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    rel = torch.arange(-127, 128, dtype=torch.long)
    buckets = MPNetEncoder.relative_position_bucket(rel, num_buckets=32)
    ref["relative_buckets"] = [int(b) for b in buckets]
    ref["notes"].append("relative_buckets[k]: MPNetEncoder.relative_position_bucket(k - 127, num_buckets=32) for k in 0..254")
    write_json(path / "reference.json", ref)
    return name


def fixture_bert_lasttoken(wordpiece):
    name = "tiny-bert-lasttoken"
    path = fresh(name)
    save_tokenizer(wordpiece, path, 64, ["input_ids", "token_type_ids", "attention_mask"], **BERT_SPECIALS)
    build_model(BertModel, bert_config(wordpiece.get_vocab_size()), 103, path)
    write_st_files(path, 32, "lasttoken")
    model, ref = embedding_reference(name, path, 32, "lasttoken", "bert", extra_notes=[
        "lasttoken: the hidden state of the last non-padding token, which is [SEP] here",
    ])
    # CLS, two ways: a temporary copy whose pooling is CLS, and token 0 of the
    # token embeddings.
    with tempfile.TemporaryDirectory() as tmp:
        cls_dir = Path(tmp) / "cls"
        shutil.copytree(path, cls_dir)
        cfg = json.loads((cls_dir / "1_Pooling/config.json").read_text())
        for k in POOLING_KEYS:
            cfg["pooling_mode_" + k] = k == "cls_token"
        write_json(cls_dir / "1_Pooling/config.json", cfg)
        cls = st_encode(load_st(cls_dir), TEXTS)
    tok0 = []
    last = []
    for t in TEXTS:
        states = model.encode([t], output_value="token_embeddings", convert_to_numpy=False)[0].numpy()
        tok0.append(states[0] / max(np.linalg.norm(states[0]), 1e-12))
        last.append(states[-1] / max(np.linalg.norm(states[-1]), 1e-12))
    ref["cls"] = cls
    ref["stats"]["max_abs_diff_cls_vs_token0"] = max_abs(cls, tok0)
    ref["stats"]["max_abs_diff_lasttoken_vs_last_token_state"] = max_abs(ref["embeddings"], last)
    ref["notes"].append(
        "cls: from a temporary copy of this directory whose 1_Pooling/config.json selects pooling_mode_cls_token "
        "(copy deleted), encode([text], batch_size=1, normalize_embeddings=True); stats.max_abs_diff_cls_vs_token0 "
        "compares with token 0 of encode(output_value='token_embeddings'), L2-normalised"
    )
    write_json(path / "reference.json", ref)
    return name


def fixture_bert_reranker(wordpiece):
    name = "tiny-bert-reranker"
    path = fresh(name)
    save_tokenizer(wordpiece, path, 64, ["input_ids", "token_type_ids", "attention_mask"], **BERT_SPECIALS)
    build_model(BertForSequenceClassification, bert_config(wordpiece.get_vocab_size(), num_labels=1), 104, path)
    ref = reranker_reference(name, path, with_token_types=True, tokenizer="bert")
    write_json(path / "reference.json", ref)
    return name


def fixture_xlmr_reranker(unigram):
    name = "tiny-xlm-roberta-reranker"
    path = fresh(name)
    save_tokenizer(unigram, path, 64, ["input_ids", "attention_mask"], **XLMR_SPECIALS)
    build_model(XLMRobertaForSequenceClassification, xlmr_config(unigram.get_vocab_size(), num_labels=1), 105, path)
    ref = reranker_reference(name, path, with_token_types=False, tokenizer="unigram")
    ref["notes"].append("pairs_token_type_ids: all 0 (the pair template gives every token type 0; type_vocab_size 1)")
    write_json(path / "reference.json", ref)
    return name


def fixture_distilbert(wordpiece):
    name = "tiny-distilbert"
    path = fresh(name)
    save_tokenizer(wordpiece, path, 64, ["input_ids", "attention_mask"], **BERT_SPECIALS)
    config = DistilBertConfig(
        vocab_size=wordpiece.get_vocab_size(), dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=INTERMEDIATE,
        max_position_embeddings=64, activation="gelu", pad_token_id=0, sinusoidal_pos_embds=False,
    )
    build_model(DistilBertModel, config, 106, path)
    write_st_files(path, 32, "mean_tokens")
    _, ref = embedding_reference(name, path, 32, "mean", "bert", extra_notes=[
        "DistilBERT: no token types, positions 0..n-1, LayerNorm eps 1e-12 (hard-coded in transformers)",
    ])
    write_json(path / "reference.json", ref)
    return name


def fixture_modernbert(bpe):
    from transformers import ModernBertConfig, ModernBertModel

    name = "tiny-modernbert"
    path = fresh(name)
    save_tokenizer(bpe, path, 64, ["input_ids", "attention_mask"], **MODERNBERT_SPECIALS)
    n = bpe.get_vocab_size()
    vocab = (n + 63) // 64 * 64  # padded embedding matrix, as ModernBERT's 50368 > 50285
    ids = {t: bpe.token_to_id(t) for t in ["[CLS]", "[SEP]", "[PAD]"]}
    config = ModernBertConfig(
        vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, max_position_embeddings=64, local_attention=16, global_attn_every_n_layers=2,
        hidden_activation="gelu", norm_eps=1e-5, pad_token_id=ids["[PAD]"], bos_token_id=ids["[CLS]"],
        eos_token_id=ids["[SEP]"], cls_token_id=ids["[CLS]"], sep_token_id=ids["[SEP]"],
    )
    build_model(ModernBertModel, config, 107, path)
    write_st_files(path, 48, "mean_tokens")
    _, ref = embedding_reference(name, path, 48, "mean", "bpe", attn="eager", extra_notes=[
        "ModernBERT references use attn_implementation='eager' (model_kwargs of SentenceTransformer / AutoModel); no flash attention",
        "ModernBERT: layer_types [full_attention, sliding_attention]; the sliding layer lets query i see key j iff "
        "|i - j| <= local_attention // 2 = 8 (transformers sliding_window_bidirectional_overlay); RoPE theta 160000 "
        "on full_attention layers and 10000 on sliding_attention layers, positions 0..n-1, head_dim 8",
        "ModernBERT: pre-norm, layer 0 has no attn_norm (Identity), LayerNorms without bias (norm_bias false), "
        "Wqkv/Wo/Wi without bias, GLU MLP: Wi -> [input, gate] halves, Wo(gelu(input) * gate), final_norm after the last layer",
        f"vocab_size {vocab} > tokenizer size {n}: rows {n}..{vocab - 1} of the embedding matrix are never used",
    ])
    # eager vs sdpa, and how much the local window matters.
    sdpa = st_encode(load_st(path, attn_implementation="sdpa"), TEXTS)
    ref["stats"]["max_abs_diff_eager_vs_sdpa"] = max_abs(ref["embeddings"], sdpa)
    with tempfile.TemporaryDirectory() as tmp:
        wide_dir = Path(tmp) / "wide"
        shutil.copytree(path, wide_dir)
        cfg = json.loads((wide_dir / "config.json").read_text())
        cfg["local_attention"] = 2 * 64
        write_json(wide_dir / "config.json", cfg)
        wide = st_encode(load_st(wide_dir, attn_implementation="eager"), TEXTS)
    diffs = np.abs(np.asarray(ref["embeddings"]) - np.asarray(wide)).max(axis=1)
    ref["stats"]["max_abs_diff_vs_window_covering_everything_per_text"] = [float(d) for d in diffs]
    ref["notes"].append(
        "stats.max_abs_diff_eager_vs_sdpa: the same encode with attn_implementation='sdpa'; "
        "stats.max_abs_diff_vs_window_covering_everything_per_text: a temporary copy with local_attention 128 (the sliding "
        "layer keeps RoPE theta 10000 but its window covers all 48 tokens): zero for texts of at most 9 tokens, nonzero "
        "where the 16-token window cuts something"
    )
    write_json(path / "reference.json", ref)
    return name


# --------------------------------------------------------------------------
# Validation: reload from disk and reproduce.
# --------------------------------------------------------------------------
TOL = 1e-5


def check(cond, msg, failures):
    if not cond:
        failures.append(msg)


def validate(name, failures):
    path = OUT / name
    ref = json.loads((path / "reference.json").read_text())
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "reference.json"]:
        check((path / f).is_file(), f"{name}: missing {f}", failures)
    with safe_open(str(path / "model.safetensors"), "pt") as sf:
        for k in sf.keys():
            check(sf.get_tensor(k).dtype == torch.float32, f"{name}: {k} is not float32", failures)
    tj = json.loads((path / "tokenizer.json").read_text())
    check(tj.get("truncation") is None and tj.get("padding") is None, f"{name}: tokenizer.json has truncation/padding", failures)
    raw = Tokenizer.from_file(str(path / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if "texts" in ref:
        raw.enable_truncation(ref["max_seq_length"])
        for t, ids in zip(ref["texts"], ref["input_ids"]):
            check(raw.encode(t).ids == ids, f"{name}: tokenizers ids differ for {t[:20]!r}", failures)
            check(hf(t, truncation=True, max_length=ref["max_seq_length"])["input_ids"] == ids,
                  f"{name}: AutoTokenizer ids differ for {t[:20]!r}", failures)
        attn = "eager" if ref["model_type"] == "modernbert" else None
        kw = {"attn_implementation": attn} if attn else {}
        model = load_st(path, **kw)
        again = st_encode(model, ref["texts"])
        d = max_abs(again, ref["embeddings"])
        check(d <= TOL, f"{name}: embeddings reproduce only to {d}", failures)
        for pname in ("query", "passage"):
            if pname in ref:
                again = st_encode(model, ref["texts"], prompt_name=pname)
                d = max_abs(again, ref[pname])
                check(d <= TOL, f"{name}: {pname} embeddings reproduce only to {d}", failures)
                prompt = json.loads((path / "config_sentence_transformers.json").read_text())["prompts"][pname]
                for t, ids in zip(ref["texts"], ref[f"{pname}_input_ids"]):
                    check(raw.encode(prompt + t).ids == ids, f"{name}: {pname} ids differ for {t[:20]!r}", failures)
                if ref["pooling"] == "mean":
                    manual = manual_mean(path, ref["texts"], ref["max_seq_length"], prompt=prompt, attn=attn)
                    d = max_abs(manual, ref[pname])
                    check(d <= TOL, f"{name}: manual {pname} differs by {d}", failures)
        if ref["pooling"] == "mean":
            d = max_abs(manual_mean(path, ref["texts"], ref["max_seq_length"], attn=attn), ref["embeddings"])
            check(d <= TOL, f"{name}: manual mean pooling differs by {d}", failures)
        if "cls" in ref:
            tok0 = []
            for t in ref["texts"]:
                s = model.encode([t], output_value="token_embeddings", convert_to_numpy=False)[0][0].numpy()
                tok0.append(s / max(np.linalg.norm(s), 1e-12))
            d = max_abs(tok0, ref["cls"])
            check(d <= TOL, f"{name}: cls differs by {d}", failures)
        for s_name, v in ref["stats"].items():
            if s_name.startswith("max_abs_diff") and not s_name.startswith("max_abs_diff_vs_window"):
                check(v <= 1e-4, f"{name}: stats.{s_name} = {v}", failures)
        if "max_abs_diff_vs_window_covering_everything_per_text" in ref["stats"]:
            for n_tok, d in zip(ref["token_counts"], ref["stats"]["max_abs_diff_vs_window_covering_everything_per_text"]):
                check((d == 0.0) == (n_tok <= 9), f"{name}: window effect {d} for a {n_tok}-token text", failures)
        long_idx = ref["texts"].index(LONG_TEXT)
        check(ref["stats"]["token_count_long_text_untruncated"] > 100, f"{name}: long text too short", failures)
        check(len(ref["input_ids"][long_idx]) == ref["max_seq_length"], f"{name}: long text not truncated", failures)
    else:
        raw.enable_truncation(ref["max_length"], strategy="longest_first")
        model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True).eval()
        with torch.no_grad():
            for d_, ids, types, logit in zip(ref["documents"], ref["pairs_input_ids"], ref["pairs_token_type_ids"], ref["logits"]):
                e = raw.encode(ref["query"], d_)
                check(e.ids == ids and list(e.type_ids) == types, f"{name}: pair ids differ for {d_[:20]!r}", failures)
                kw = {"token_type_ids": torch.tensor([types])} if "token_type_ids" in hf.model_input_names else {}
                x = torch.tensor([ids])
                out = float(model(input_ids=x, attention_mask=torch.ones_like(x), **kw).logits[0, 0])
                check(abs(out - logit) <= TOL, f"{name}: logit differs by {abs(out - logit)}", failures)
        check(ref["stats"]["transformers_tokenizer_differs_for_documents"] in ([], [ref["documents"].index("")]),
              f"{name}: transformers' tokenizer differs for a non-empty document", failures)
        long_idx = ref["documents"].index(LONG_TEXT)
        check(len(ref["pairs_input_ids"][long_idx]) == ref["max_length"], f"{name}: long pair not truncated", failures)
        for s_name, v in ref["stats"].items():
            if s_name.startswith("max_abs_diff"):
                check(v <= 1e-4, f"{name}: stats.{s_name} = {v}", failures)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    unigram = train_unigram()
    bert_wp = train_bert_wordpiece()
    mpnet_wp = train_mpnet_wordpiece()
    bpe = train_bytelevel_bpe()
    names = [
        fixture_xlmr(unigram),
        fixture_mpnet(mpnet_wp),
        fixture_bert_lasttoken(bert_wp),
        fixture_bert_reranker(bert_wp),
        fixture_xlmr_reranker(unigram),
        fixture_distilbert(bert_wp),
    ]
    try:
        names.append(fixture_modernbert(bpe))
    except ImportError as e:
        print(f"skipped tiny-modernbert: {e}", file=sys.stderr)
    failures = []
    for name in names:
        validate(name, failures)
    for name in names:
        size = sum(p.stat().st_size for p in (OUT / name).rglob("*") if p.is_file())
        print(f"{name}: {size} bytes", file=sys.stderr)
    if failures:
        print("VALIDATION FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("all fixtures validated", file=sys.stderr)


if __name__ == "__main__":
    main()
