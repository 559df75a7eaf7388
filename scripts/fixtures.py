"""Tiny random Hugging Face checkpoints and a tiny tokenizer for alignlab's parity tests.

Run by `make fixtures` (with the venv of `make baselines`); writes tests/fixtures/. Each model
folder is what `huggingface-cli download` gives (config.json, model.safetensors) plus
`expected.safetensors`: fixed input ids, the logits transformers computes on them in float32,
and a greedy continuation transformers generates with its cache. Some configs are rewritten
in transformers 4's layout (`rope_theta`, `rope_scaling`, `rotary_pct`, `torch_dtype`), as
most published checkpoints carry it, and some weights are stored in fp16 or bf16, as published
checkpoints are; the expected values come from transformers reading those very files.
"""

import json
import os
import random
import sys

import torch
from safetensors.torch import save_file
from tokenizers import (Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
                        trainers)
import transformers
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification,
                          BertConfig, BertForSequenceClassification, DistilBertConfig,
                          DistilBertForSequenceClassification, RobertaConfig,
                          RobertaForSequenceClassification, PreTrainedTokenizerFast, GPT2Config, GPT2LMHeadModel, GPTNeoXConfig,
                          GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM,
                          LlamaForSequenceClassification, Qwen2Config,
                          Qwen2ForCausalLM)

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
VOCAB = 320
WORDS = ("the a movie film was is great terrible plot actor scene I it not very good bad "
         "story loved hated boring funny , . ! ? and but of to in").split()


def corpus(n, rng):
    """Sentences of the words above, with digits, capitals and punctuation mixed in."""
    lines = []
    for _ in range(n):
        k = rng.randint(3, 14)
        words = [rng.choice(WORDS) for _ in range(k)]
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 2000)))
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        lines.append(" ".join(words))
    return lines


def bytelevel(rng):
    """GPT-2's scheme (and Llama 3's and Qwen2's): byte-level BPE, `<|endoftext|>` as BOS,
    EOS and padding, nothing added by the post-processor."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(2000, rng), trainer)
    return tok, {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                 "pad_token": "<|endoftext|>"}


def metaspace(rng):
    """SentencePiece's scheme (Llama 2, Mistral): BPE over `▁`-marked words with byte
    fallback, `<s>` prepended by the post-processor."""
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=VOCAB + 64, special_tokens=specials,
                                  show_progress=False)
    tok.train_from_iterator(corpus(2000, rng), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok, {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>"}


def wordpiece(rng):
    """BERT's scheme (the encoder classifiers): lower-cased WordPiece, [CLS] ... [SEP]."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=VOCAB, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False)
    tok.train_from_iterator(corpus(2000, rng), trainer)
    tok.post_processor = processors.BertProcessing(
        ("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]")))
    return tok, {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                 "unk_token": "[UNK]"}


def roberta_bpe(rng):
    """RoBERTa's scheme: byte-level BPE, `<s> ... </s>`, `<pad>` = 1 (its positions count from
    the padding id)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(2000, rng), trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tok, {"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>",
                 "pad_token": "<pad>", "unk_token": "<unk>"}


CLASSIFIER_TEXTS = ["the movie was great", "terrible plot and a boring actor", "",
                    "I loved it ! ! !", "not very good , but funny", "ünïcödé 🙂 text",
                    " ".join(["a very long review"] * 40)]


def save_classifier(name, model, made):
    """A `*ForSequenceClassification` checkpoint with its tokenizer, and the logits
    transformers gives on a padded batch of texts (truncated to the model's positions)."""
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d)
    tok, specials = made
    tok.save(os.path.join(d, "tokenizer.json"))
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 64, **specials},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    fast = PreTrainedTokenizerFast.from_pretrained(d)
    back = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float32).eval()
    batch = fast(CLASSIFIER_TEXTS, padding=True, truncation=True, max_length=64,
                 return_tensors="pt")
    with torch.no_grad():
        logits = back(**{k: v for k, v in batch.items() if k != "token_type_ids"}).logits
    save_file({"logits": logits.contiguous(), "input_ids": batch["input_ids"].contiguous()},
              os.path.join(d, "expected.safetensors"))
    json.dump(CLASSIFIER_TEXTS, open(os.path.join(d, "texts.json"), "w"), ensure_ascii=False)
    for f in ("generation_config.json",):
        if os.path.exists(os.path.join(d, f)):
            os.remove(os.path.join(d, f))
    print(f"{d}: {sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))} bytes")


def save_tokenizer(name, made, texts):
    """tokenizer.json, tokenizer_config.json, and cases.json: each string's ids without and
    with the special tokens as transformers' fast tokenizer gives them, and its decoding."""
    tok, specials = made
    d = os.path.join(OUT, "tokenizers", name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", **specials},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    fast = PreTrainedTokenizerFast.from_pretrained(d)
    cases = []
    for t in texts:
        ids = fast(t, add_special_tokens=False)["input_ids"]
        cases.append({"text": t, "ids": ids,
                      "ids_special": fast(t, add_special_tokens=True)["input_ids"],
                      "decoded": fast.decode(ids, skip_special_tokens=True)})
    json.dump(cases, open(os.path.join(d, "cases.json"), "w"), ensure_ascii=False)


def strings(rng):
    """300 strings: sentences, unicode, whitespace runs, empty, very long."""
    out = ["", " ", "  ", "\n", "\t\t x", "a", "The movie was great!", "  leading spaces",
           "trailing spaces   ", "multiple   inner    spaces", "line\nbreaks\n\nhere",
           "ünïcödé wörds", "日本語のテキスト", "emoji 🙂🎬 mixed", "Ελληνικά και English",
           "tabs\tand\tmore\ttabs", "\u00a0non-breaking\u00a0space", "zero\u200bwidth",
           "numbers 1234567890 3.14159", "don't won't I'm it's", "<|endoftext|>",
           "text with <|endoftext|> inside", "\r\nwindows\r\nlines", "a" * 500,
           " ".join(corpus(60, rng))]
    out += corpus(300 - len(out), rng)
    return out


def expected(model, vocab, rng_seed):
    """Fixed ids, transformers' float32 logits on them, and a cached greedy continuation."""
    g = torch.Generator().manual_seed(rng_seed)
    ids = torch.randint(1, vocab, (2, 12), generator=g)
    prompt = torch.randint(1, vocab, (1, 5), generator=g)
    with torch.no_grad():
        logits = model(ids).logits.float()
        out = model.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=True,
                             eos_token_id=None, pad_token_id=0,
                             attention_mask=torch.ones_like(prompt))
    return {"ids": ids, "logits": logits.contiguous(), "prompt": prompt,
            "greedy": out[:, prompt.shape[1]:].contiguous()}


def to_v4(path, rename, drop=()):
    """Rewrite a saved config.json in transformers 4's layout."""
    cfg = json.load(open(path))
    rope = cfg.pop("rope_parameters", None) or {}
    for k in drop:
        cfg.pop(k, None)
    cfg.update(rename(rope))
    cfg["torch_dtype"] = cfg.pop("dtype", "float32")
    cfg["transformers_version"] = "4.46.0"
    json.dump(cfg, open(path, "w"), indent=2, sort_keys=True)


def save(name, model, dtype, v4=None, seed=0):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    model.to(dtype).save_pretrained(d)
    if v4:
        to_v4(os.path.join(d, "config.json"), v4)
    # The expected values come from transformers reading the files written, in float32.
    back = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    save_file(expected(back, model.config.vocab_size, seed), os.path.join(d, "expected.safetensors"))
    for f in ("generation_config.json",):
        if os.path.exists(os.path.join(d, f)):
            os.remove(os.path.join(d, f))
    print(f"{d}: {sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))} bytes")


POSITIVE = "great good loved funny".split()
NEGATIVE = "terrible bad hated boring".split()


def preference_rows(n, rng):
    """TRL's standard preference rows: a 2 to 5 word prompt of the words above, a chosen reply
    with a positive word and a rejected one with a negative word (a sentiment task's pairs)."""
    neutral = [w for w in WORDS if w not in POSITIVE + NEGATIVE and w not in ",.!?"]
    rows = []
    for _ in range(n):
        prompt = " ".join(rng.choice(neutral) for _ in range(rng.randint(2, 5)))
        def reply(mood):
            words = [rng.choice(neutral) for _ in range(rng.randint(2, 6))]
            words.insert(rng.randint(0, len(words)), rng.choice(mood))
            return " " + " ".join(words) + rng.choice([" .", " !", ""])
        rows.append({"prompt": prompt, "chosen": reply(POSITIVE), "rejected": reply(NEGATIVE)})
    return rows


def review_rows(n, rng):
    """IMDb-style rows (`text`, `label`): 8 to 20 words, positive or negative ones mixed in."""
    neutral = [w for w in WORDS if w not in POSITIVE + NEGATIVE]
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        mood = POSITIVE if label else NEGATIVE
        words = [rng.choice(mood if rng.random() < 0.25 else neutral)
                 for _ in range(rng.randint(8, 20))]
        rows.append({"text": " ".join(words), "label": label})
    return rows


def dataset(out):
    """tests/fixtures/data: 200 preference rows and 200 IMDb-style reviews as JSON lines, for
    the dataset world's runs."""
    d = os.path.join(out, "data")
    os.makedirs(d, exist_ok=True)
    prefs = preference_rows(200, random.Random(3))
    # The same pairs as Anthropic HH's raw rows and as TL;DR comparisons.
    hh = [{"chosen": f"\n\nHuman: {r['prompt']}\n\nAssistant:{r['chosen']}",
           "rejected": f"\n\nHuman: {r['prompt']}\n\nAssistant:{r['rejected']}"} for r in prefs]
    pick = random.Random(5)
    tldr = []
    for r in prefs:
        choice = pick.randint(0, 1)
        pair = [r["chosen"], r["rejected"]] if choice == 0 else [r["rejected"], r["chosen"]]
        tldr.append({"info": {"post": r["prompt"]}, "summaries": [{"text": t} for t in pair],
                     "choice": choice})
    for name, rows in [("prefs.jsonl", prefs), ("imdb.jsonl", review_rows(200, random.Random(4))),
                       ("hh.jsonl", hh), ("tldr.jsonl", tldr)]:
        with open(os.path.join(d, name), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        print(f"{d}/{name}: {len(rows)} rows")
    # HH's rows gzipped, as Anthropic/hh-rlhf ships them (no timestamp: the same bytes each run).
    import gzip
    with open(os.path.join(d, "hh.jsonl"), "rb") as f, open(os.path.join(d, "hh.jsonl.gz"), "wb") as g:
        with gzip.GzipFile(fileobj=g, mode="wb", mtime=0, filename="") as z:
            z.write(f.read())
    # The preference rows as Parquet, snappy-compressed (the datasets library's default), with
    # a nested column and an integer column beside them.
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({"prompt": [r["prompt"] for r in prefs],
                      "meta": [{"chosen": r["chosen"]} for r in prefs],
                      "rejected": [r["rejected"] for r in prefs],
                      "score": list(range(len(prefs)))})
    pq.write_table(table, os.path.join(d, "prefs.parquet"), compression="snappy")
    print(f"{d}/prefs.parquet: {table.num_rows} rows")
    # The reviews as the hub ships stanfordnlp/imdb: Parquet with `text` and `label`.
    reviews = [json.loads(l) for l in open(os.path.join(d, "imdb.jsonl"))]
    pq.write_table(pa.table({"text": [r["text"] for r in reviews],
                             "label": [r["label"] for r in reviews]}),
                   os.path.join(d, "imdb.parquet"), compression="snappy")
    real_layout(out)


def real_layout(out):
    """tests/fixtures/real: the folder layout scenarios/real-*.toml expect under
    ${ALIGNLAB_DATA}, made of the fixtures by relative symlinks (tiny random models, the
    byte-level tokenizer, 200-row data), so that the real scenarios run in `make test`."""
    root = os.path.join(out, "real")
    tok = ["tokenizers/bytelevel/tokenizer.json", "tokenizers/bytelevel/tokenizer_config.json"]
    model = lambda name: [f"{name}/config.json", f"{name}/model.safetensors"] + tok
    layout = {
        "gpt2-large": model("gpt2"),
        "pythia-2.8b": model("pythia"), "pythia-410m": model("pythia"),
        "pythia-1.4b-deduped": model("pythia"),
        "gpt2-large-helpful-reward_model": model("llama-rm"), "tldr-gold-rm": model("llama-rm"),
        "sentiment-roberta-large-english": [f"roberta-classifier/{f}" for f in (
            "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")],
        "imdb/plain_text": [("data/imdb.parquet", "train-00000-of-00001.parquet"),
                            ("data/imdb.parquet", "test-00000-of-00001.parquet")],
        "hh-rlhf/helpful-base": [("data/hh.jsonl.gz", "train.jsonl.gz"),
                                 ("data/hh.jsonl.gz", "test.jsonl.gz")],
        "summarize_from_feedback/comparisons": [("data/tldr.jsonl", "train.jsonl"),
                                                ("data/tldr.jsonl", "validation.jsonl")],
    }
    for folder, files in layout.items():
        d = os.path.join(root, folder)
        os.makedirs(d, exist_ok=True)
        for f in files:
            src, name = f if isinstance(f, tuple) else (f, os.path.basename(f))
            link = os.path.join(d, name)
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(os.path.relpath(os.path.join(out, src), d), link)
    print(f"{root}: {len(layout)} folders of links")


def main():
    dataset(OUT)
    torch.manual_seed(0)
    rng = random.Random(0)
    os.makedirs(OUT, exist_ok=True)
    texts = strings(rng)
    for name, make in [("bytelevel", bytelevel), ("metaspace", metaspace),
                       ("wordpiece", wordpiece)]:
        save_tokenizer(name, make(random.Random(1)), texts)
    common = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    # GPT-2 (the paper's IMDb policy): learned positions, tied head, Conv1D layouts; fp32.
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                      **common)).eval()
    save("gpt2", gpt2, torch.float32)
    # Pythia (GPT-NeoX): rotary on half of each head, parallel residual, untied head; stored
    # in fp16 with a transformers 4 config, as Pythia's checkpoints are.
    neox = GPTNeoXForCausalLM(GPTNeoXConfig(hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=4, intermediate_size=64,
                                            max_position_embeddings=64, rotary_pct=0.5,
                                            **common)).eval()
    save("pythia", neox, torch.float16, v4=lambda r: {
        "rotary_pct": r.get("partial_rotary_factor", 1.0), "rotary_emb_base": r["rope_theta"]})
    # Llama 3: grouped-query attention, llama3 RoPE scaling, untied head; bf16 weights and a
    # transformers 4 config (rope_theta, rope_scaling).
    llama = LlamaForCausalLM(LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, max_position_embeddings=64, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
        **common)).eval()
    save("llama", llama, torch.bfloat16, v4=lambda r: {
        "rope_theta": r.pop("rope_theta"), "rope_scaling": r})
    # Qwen2.5: q/k/v biases, tied embeddings, linear RoPE scaling; transformers 5's config.
    qwen = Qwen2ForCausalLM(Qwen2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
        intermediate_size=48, max_position_embeddings=64, tie_word_embeddings=True,
        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0},
        **common)).eval()
    save("qwen2", qwen, torch.float32)
    # A decoder reward model (LlamaForSequenceClassification, one output, `score.weight`):
    # transformers' score of each row at its last token.
    rm = LlamaForSequenceClassification(LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=48, max_position_embeddings=64, num_labels=1, **common)).eval()
    d = os.path.join(OUT, "llama-rm")
    os.makedirs(d, exist_ok=True)
    rm.save_pretrained(d)
    back = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float32).eval()
    ids = torch.randint(1, VOCAB, (3, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        scores = back(ids).logits[:, 0].contiguous()
    save_file({"ids": ids, "scores": scores}, os.path.join(d, "expected.safetensors"))
    print(f"{d}: {sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))} bytes")

    # Encoder classifiers as reward models: BERT and DistilBERT with a WordPiece tokenizer,
    # RoBERTa with its byte-level BPE; two labels named as sentiment classifiers name them.
    labels = dict(num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                  label2id={"NEGATIVE": 0, "POSITIVE": 1})
    wp = wordpiece(random.Random(1))
    torch.manual_seed(1)
    save_classifier("bert-classifier", BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=0, **labels)).eval(), wp)
    save_classifier("distilbert-classifier", DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
        max_position_embeddings=64, pad_token_id=0, **labels)).eval(), wp)
    rb = roberta_bpe(random.Random(1))
    save_classifier("roberta-classifier", RobertaForSequenceClassification(RobertaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=66, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, type_vocab_size=1, **labels)).eval(), rb)
    print(f"transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
