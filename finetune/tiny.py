"""A small random Llama-architecture model with a locally trained BPE tokenizer.

It lets tests, CI and the offline demo run every code path (chat template, generation, 4-bit
loading, LoRA training, adapter swaps) with no download. Real deployments point
APPRENTI_BASE_MODEL at a real model; nothing else changes.
"""

from __future__ import annotations

import json
from pathlib import Path

# The chat template marks assistant turns with {% generation %} so TRL's assistant-only loss
# (return_assistant_tokens_mask) knows which tokens to learn.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

SPECIAL_TOKENS = ["<|pad|>", "<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"]

SIZES = {
    # name: hidden, intermediate, layers, heads, kv heads
    "tiny": (64, 176, 2, 4, 2),
    "small": (512, 1536, 9, 8, 4),  # about 29M parameters with the bundled tokenizer (~1,050 tokens)
    "medium": (768, 2048, 16, 12, 4),  # about 102M parameters
}


def _corpus() -> list[str]:
    text = (Path(__file__).parent / "data" / "tiny_corpus.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    # Template fragments, so the roles and newlines become single tokens.
    lines += ["system\n", "user\n", "assistant\n", "<|im_start|>user\n", "<|im_start|>assistant\n"]
    return lines


def build_tokenizer(vocab_size: int = 2048):
    """Train a byte-level BPE on the bundled bilingual corpus and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|begin_of_text|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        model_max_length=2048,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny(
    directory: str | Path,
    size: str = "tiny",
    seed: int = 0,
    vocab_size: int = 2048,
    initializer_range: float = 0.02,
) -> Path:
    """Write a random Llama model and its tokenizer to `directory` in Hugging Face format."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size)
    hidden, intermediate, layers, heads, kv_heads = SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "apprenti-tiny.json").write_text(
        json.dumps({"size": size, "seed": seed, "parameters": model.num_parameters()}, indent=2)
    )
    return directory
