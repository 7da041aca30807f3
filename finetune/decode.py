"""Fast single-answer decoding on a CPU: the adapter merged into a served copy of the weights.

A small model decoding one token at a time on a CPU is bound by reading its weights (measured on the
bundled SmolLM2-135M, 2 cores: `aten::mm` is 81 % of a decoding step). peft's unmerged LoRA adds two
small matmuls per projection; transformers' prompt lookup checks ten drafts per step, and a forward
pass over eleven rows costs about twice one row in float32 there. So `ChatModel` prefills on the loaded
weights (exactly what generate() would compute, the prefix cache included) and decodes each next token
on a copy of the weights with the adapter merged in and the projections stored in bfloat16 (half the
bytes read per token; the residual stream, norms, attention and KV cache stay float32), checking one
draft token copied from the prompt per step (two rows cost what one costs in bfloat16 there).
Figures: docs/benchmarks.md, `python -m bench.decode_speed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def _repeats(k: int, repeats: int) -> int:
    # A short cycle must repeat more before it counts: "1000000" is six "0" tokens, not a loop.
    return max(repeats, -(-12 // k))


def loop_length(tokens, repeats: int = 3, longest: int = 12) -> int:
    """The length of the cycle the sequence ends in, when its last runs are the same (a small model
    stuck saying "de la note de la note…"): `repeats` runs, and at least 12 tokens in all; 0 when
    it does not end in one."""
    n = len(tokens)
    for k in range(1, longest + 1):
        times = _repeats(k, repeats)
        if n < k * times:
            continue
        tail = tokens[n - k :]
        if all(tokens[n - (r + 1) * k : n - r * k] == tail for r in range(1, times)):
            return k
    return 0


# The most tokens loop_length reads from the end: its longest cycle times the runs it needs.
LOOP_WINDOW = max(k * _repeats(k, 3) for k in range(1, 13))


def loop_stop(prompt_width: int):
    """A stopping criterion for generate(): a sequence stuck in a loop is finished (per row).
    Called after every new token, so it reads only the answer's last LOOP_WINDOW tokens."""
    import torch
    from transformers import StoppingCriteria

    class LoopStop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            start = max(prompt_width, input_ids.shape[1] - LOOP_WINDOW)
            rows = [loop_length(row[start:].tolist()) > 0 for row in input_ids]
            return torch.tensor(rows, dtype=torch.bool, device=input_ids.device)

    return LoopStop()


def trim_loop(tokens: list[int], repeats: int = 3) -> list[int]:
    """The tokens with a final loop cut back to one run of it."""
    k = loop_length(tokens, repeats)
    return tokens[: len(tokens) - k * (_repeats(k, repeats) - 1)] if k else tokens


# generate() settings that change which token greedy decoding picks: a model whose generation config
# sets one is decoded by transformers' generate(), which applies them.
_PROCESSING = (
    "repetition_penalty",
    "encoder_repetition_penalty",
    "no_repeat_ngram_size",
    "bad_words_ids",
    "suppress_tokens",
    "begin_suppress_tokens",
    "sequence_bias",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "min_new_tokens",
    "renormalize_logits",
)


def plain_generation(model) -> bool:
    """Whether the model's generation config leaves greedy decoding as a plain argmax."""
    config = getattr(model, "generation_config", None)
    if config is None:
        return True
    for name in _PROCESSING:
        value = getattr(config, name, None)
        if value in (None, False, 0, 1.0, [], {}):
            continue
        return False
    return not getattr(config, "min_length", 0)


def _supported_lora(base, adapter: str) -> dict | None:
    """The LoRA layers of `adapter` (module path -> layer) when every one of them can be merged into a
    plain linear weight (unquantised peft LoRA Linear, no DoRA, no LoRA bias, no saved modules); None
    otherwise."""
    from peft.tuners.lora import Linear as LoraLinear

    layers = {}
    for name, module in base.named_modules():
        if "modules_to_save" in name or "original_module" in name:
            return None
        lora_a = getattr(module, "lora_A", None)
        if lora_a is None or adapter not in lora_a:
            if adapter in (getattr(module, "lora_embedding_A", None) or {}):
                return None
            continue
        if type(module) is not LoraLinear or module.use_dora.get(adapter):
            return None
        if module.get_base_layer().weight is base.get_input_embeddings().weight:
            return None  # a tied output head: merging would change the embeddings too
        if getattr(module.lora_B[adapter], "bias", None) is not None:
            return None
        layers[name] = module
    return layers


# How the served copy stores its weights: "bfloat16" (projections and output head in bfloat16, the
# rest of the computation in float32) or "float32" (the loaded weights, shared where not merged).
DECODE_WEIGHTS = ("bfloat16", "float32")


def _half_modules():
    """Two modules for the bfloat16 served copy. Their weights are stored in bfloat16, so a decoding
    step reads half the bytes (a small model decoding on a CPU is bound by reading its weights);
    what flows between them stays float32: the residual stream, the norms, attention, the KV cache."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class HalfLinear(nn.Module):
        def __init__(self, weight, bias=None):
            super().__init__()
            self.weight = nn.Parameter(weight.to(torch.bfloat16), requires_grad=False)
            self.bias = None if bias is None else nn.Parameter(bias.detach().float(), requires_grad=False)

        def forward(self, x):
            y = F.linear(x.to(self.weight.dtype), self.weight).to(x.dtype)
            return y if self.bias is None else y + self.bias

    class RescoredHead(nn.Module):
        """The output head: logits from the bfloat16 weights, then each row's `top` best tokens
        scored again from the float32 weights, so the token greedy decoding picks is float32's
        whenever it is among bfloat16's best 32 (the bfloat16 error is far below those gaps)."""

        def __init__(self, weight, top: int = 32):
            super().__init__()
            self.low = nn.Parameter(weight.detach().to(torch.bfloat16), requires_grad=False)
            self.full = weight.detach()  # the loaded float32 weights, shared, not a parameter here
            self.top = min(top, weight.shape[0])

        def forward(self, x):
            logits = F.linear(x.to(self.low.dtype), self.low).float()
            index = logits.topk(self.top, dim=-1).indices
            exact = (self.full[index] * x.float().unsqueeze(-2)).sum(-1)
            return logits.scatter_(-1, index, exact)

    return HalfLinear, RescoredHead


def merged_copy(base, adapter: str | None, weights: str = "float32"):
    """A plain transformers model with `base`'s weights and `adapter`'s LoRA merged into them
    (W + scale * B @ A, in float32), or None when the adapter cannot be merged.

    weights="float32": the copy holds its own tensors only for the merged projections and shares every
    other weight with `base` (without an adapter it shares them all). weights="bfloat16": the
    projections and the output head are stored in bfloat16 (`_half_modules`); the embeddings, norms
    and buffers are `base`'s. `base` is the transformers model, LoRA layers injected or not."""
    import torch
    from torch import nn

    if weights not in DECODE_WEIGHTS:
        raise ValueError(f"decode weights must be one of {', '.join(DECODE_WEIGHTS)}, not {weights!r}")
    layers: dict = {}
    if adapter is not None:
        found = _supported_lora(base, adapter)
        if found is None:
            return None
        layers = found
    half = weights == "bfloat16"
    HalfLinear, RescoredHead = _half_modules() if half else (None, None)
    with torch.device("meta"):
        served = type(base)(base.config)
    head = served.get_output_embeddings()
    shared: dict[int, Any] = {}
    for name, param in base.named_parameters(remove_duplicate=False):
        if ".lora_" in name:
            continue
        owner = name.rpartition(".")[0].removesuffix(".base_layer")
        target, _, leaf = name.replace(".base_layer.", ".").rpartition(".")
        module = served.get_submodule(target)
        value = param.detach()
        layer = layers.get(owner) if leaf == "weight" else None
        if layer is not None:
            delta = layer.get_delta_weight(adapter).to(device=value.device, dtype=torch.float32)
            value = value.float() + delta
        value = shared.setdefault(id(param), value) if layer is None else value
        if half and isinstance(module, nn.Linear) and module is not head and leaf == "weight":
            parent, _, child = target.rpartition(".")
            replacement = HalfLinear(value, getattr(module, "bias", None))
            served.get_submodule(parent).register_module(child, replacement)
            continue
        if half and isinstance(module, HalfLinear):  # the bias of a projection replaced above
            module.bias = nn.Parameter(value.float(), requires_grad=False)
            continue
        module._parameters[leaf] = nn.Parameter(value, requires_grad=False)
    if half:
        parent, _, child = _module_path(served, head).rpartition(".")
        replacement = RescoredHead(head.weight)
        if parent:
            served.get_submodule(parent).register_module(child, replacement)
        else:
            served.register_module(child, replacement)
    for name, buffer in base.named_buffers(remove_duplicate=False):
        if ".lora_" in name:
            continue
        target, _, leaf = name.replace(".base_layer.", ".").rpartition(".")
        module = served.get_submodule(target)
        if leaf in module._buffers:
            module._buffers[leaf] = buffer
    for module in served.modules():
        # Attributes that are copies of buffers (the rotary embedding's original frequencies).
        for attr, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and value.is_meta:
                source = base.get_submodule(_module_path(served, module))
                setattr(module, attr, getattr(source, attr))
    if any(t.is_meta for t in [*served.parameters(), *served.buffers()]):
        return None
    served.eval()
    served.requires_grad_(False)
    return served


def _module_path(root, module) -> str:
    return next(name for name, m in root.named_modules() if m is module)


def prompt_draft(tokens: list[int], length: int, ngram: int = 2) -> list[int]:
    """Prompt lookup: the `length` tokens that followed the earliest earlier occurrence of the last
    `ngram` tokens (then of the last one), or [] when they never occurred before."""
    if length <= 0:
        return []
    n = len(tokens)
    for size in range(ngram, 0, -1):
        if n <= size:
            continue
        tail = tokens[n - size :]
        first = tail[0]
        for start in range(0, n - size):
            if tokens[start] == first and tokens[start : start + size] == tail:
                follow = tokens[start + size : start + size + length]
                if follow:
                    return follow
    return []


def _pick(logits, temperature: float, top_p: float = 0.95) -> int:
    """The next token: argmax, or a sample at `temperature` from the top-p nucleus."""
    import torch

    if temperature <= 0:
        return int(logits.argmax())
    logits = logits.float() / temperature
    ordered, index = torch.sort(logits, descending=False)
    cumulative = ordered.softmax(-1).cumsum(-1)
    drop = cumulative <= 1 - top_p
    drop[-1] = False
    logits = logits.scatter(0, index[drop], float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1))


def decode(
    prefill,
    served,
    ids,
    cache,
    *,
    eos: int | None,
    max_new_tokens: int,
    temperature: float,
    draft_tokens: int,
    stop: Callable[[list[int]], bool],
    max_time: float | None,
    started: float,
    streamer=None,
) -> list[int]:
    """The answer's token ids after `ids`. `prefill` reads the prompt (its tokens past those already in
    `cache`, the KV cache of a reused prefix) and picks the first token; every later step runs on
    `served`. Greedy decoding checks up to `draft_tokens` tokens copied from the prompt (`prompt_draft`)
    in the same forward pass and keeps those the model agrees with, so the text is what one token at a
    time gives. Ends at `eos`, at `max_new_tokens`, when `stop(tokens)` says so (a loop), or when
    `max_time` seconds have passed since `started`; `streamer` gets the new tokens as they come."""
    import torch

    done = cache.get_seq_length()
    out = prefill(input_ids=ids[:, done:], past_key_values=cache, use_cache=True, logits_to_keep=1)
    pending = [_pick(out.logits[0, -1], temperature)]
    del out
    prompt = ids[0].tolist()
    new: list[int] = []
    while True:
        ended = False
        emitted = 0
        for token in pending:
            new.append(token)
            emitted += 1
            if token == eos or len(new) >= max_new_tokens or stop(new):
                ended = True
                break
        if streamer is not None:
            streamer.put(torch.tensor(new[-emitted:]))
        if ended or (max_time is not None and time.monotonic() - started >= max_time):
            return new
        draft = []
        if temperature <= 0 and draft_tokens:
            draft = prompt_draft(prompt + new, min(draft_tokens, max_new_tokens - len(new) - 1))
        step = torch.tensor([[new[-1], *draft]], device=ids.device)
        logits = served(input_ids=step, past_key_values=cache, use_cache=True).logits[0]
        if not draft:
            pending = [_pick(logits[-1], temperature)]
            continue
        picks = logits.argmax(-1).tolist()
        agreed = 0
        while agreed < len(draft) and picks[agreed] == draft[agreed]:
            agreed += 1
        if agreed < len(draft):
            cache.crop(agreed - len(draft))  # forget the drafts the model did not agree with
        pending = [*draft[:agreed], picks[agreed]]
