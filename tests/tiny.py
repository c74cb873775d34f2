"""A tiny randomly initialised Llama model with a word-level tokenizer, saved like any HF model."""

from __future__ import annotations

import re
from pathlib import Path

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]


def build_word_tokenizer():
    """A word-level tokenizer over the word list and the packaged data, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from fingerprint.core.data import packaged
    from fingerprint.provenance.trigger import word_list

    words: set[str] = set(word_list()) | {"Sure", "sure", "user", "assistant", "system", "User", "Assistant"}
    words |= {w.capitalize() for w in word_list()}  # fallback replies are capitalised words
    for name in ("benign", "refusals", "probes"):
        for row in packaged(name):
            for text in row.values():
                words.update(re.findall(r"\w+|[^\w\s]", text))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + sorted(words - set(SPECIALS)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern="<\\|im_(start|end)\\|>", behavior="isolated"),
        pre_tokenizers.Whitespace(),
    ])
    core.decoder = decoders.WordPiece(prefix="##")  # joins word tokens with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="<|im_end|>",
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHATML
    return tokenizer


def build_tiny_model(out: Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_word_tokenizer()
    vocab = tokenizer.get_vocab()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, pad_token_id=1, bos_token_id=2,
                         eos_token_id=vocab["<|im_end|>"], tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
