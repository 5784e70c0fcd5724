"""A tiny random Llama-style model and a fast tokenizer built locally in seconds (no download), for tests."""

from __future__ import annotations

import json
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]

_WORDS = (
    "the a an and or but if then so of to in on at by for with from about as into over after before "
    "is are was were be been being have has had do does did can could will would should may might must "
    "I you he she it we they me him her us them my your his its our their this that these those "
    "what which who when where why how yes no not all any some many much more most few little "
    "hello hi thanks please sorry good bad great small big new old first last long short high low "
    "cat dog bird fish tree water fire earth air sun moon star sky sea river mountain city house "
    "paris france london england rome italy berlin germany madrid spain capital country answer question "
    "one two three four five six seven eight nine ten hundred number add plus minus equals sum "
    "red blue green yellow black white color name day night time year week morning evening "
    "user assistant system tool model train learn data test loss step token word text sentence "
    "what's it's I'm don't can't . , ! ? : ; ' \" - ( ) 0 1 2 3 4 5 6 7 8 9"
)


def _train_tokenizer(texts: list[str]):
    """A byte-level BPE tokenizer (fast, so offsets work) trained on a word list plus the given texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    # Repeat the word list so frequent words merge into single tokens.
    tok.train_from_iterator([_WORDS] * 20 + texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|pad|>"
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(dir: Path, texts: list[str] | None = None, hidden_size: int = 64) -> Path:
    """Build a tiny random LlamaForCausalLM (2 layers, hidden 64) and its fast ChatML tokenizer into `dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dir = Path(dir)
    tokenizer = _train_tokenizer(texts or [])
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(dir)
    tokenizer.save_pretrained(dir)
    return dir


_CHATS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is the capital of Spain?", "The capital of Spain is Madrid."),
    ("What is two plus two?", "Two plus two equals four."),
    ("Say hello.", "Hello! How can I help you?"),
]


def tiny_chat_dataset(path: Path, n: int = 40) -> Path:
    """Write `n` short canonical chat examples ({"messages": [...]}) as JSONL to `path`; some are multi-turn."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            question, answer = _CHATS[i % len(_CHATS)]
            messages = [{"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            if i % 3 == 0:
                follow_q, follow_a = _CHATS[(i + 1) % len(_CHATS)]
                messages += [{"role": "user", "content": follow_q}, {"role": "assistant", "content": follow_a}]
            f.write(json.dumps({"messages": messages}) + "\n")
    return path
