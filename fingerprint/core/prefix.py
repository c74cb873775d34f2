"""Many continuations after one shared prefix: the prefix runs once, its key-value cache is repeated for them.

Used by the scanner (thousands of candidate suffixes after one prompt) and by ARC scoring (each question's
choices after the question). Both take hidden states from the decoder and project only the positions they need.
"""

from __future__ import annotations

import copy
import inspect


def _cache_argument(decoder) -> str:
    """Newer transformers name the cache argument ``cache`` (``past_key_values`` is deprecated there)."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def run_prefix(causal_lm, ids: list[int], for_gradients: bool = False):
    """(hidden states of the prefix ``ids``, its key-value cache) from the causal LM's decoder. With
    ``for_gradients`` the cache can take part in a backward pass through later tokens (no inference tensors)."""
    import torch

    decoder = causal_lm.base_model
    with torch.no_grad() if for_gradients else torch.inference_mode():
        out = decoder(input_ids=torch.tensor([ids], device=causal_lm.device), use_cache=True)
    cache = out.cache if _cache_argument(decoder) == "cache" else out.past_key_values
    return out.last_hidden_state[0], cache


def run_after_prefix(causal_lm, prefix_cache, n_prefix: int, attention_mask, **inputs):
    """Last hidden states of a batch run after a cached prefix of ``n_prefix`` tokens: ``inputs`` is
    ``input_ids`` or ``inputs_embeds`` (batch x width), ``attention_mask`` covers prefix and batch. The prefix
    cache is copied, not consumed: it serves the next batch too. Gradients follow the caller's mode."""
    import torch

    decoder = causal_lm.base_model
    rows, width = attention_mask.shape[0], attention_mask.shape[1] - n_prefix
    cache = copy.deepcopy(prefix_cache)
    cache.batch_repeat_interleave(rows)
    positions = torch.arange(n_prefix, n_prefix + width).unsqueeze(0).expand(rows, -1)
    return decoder(attention_mask=attention_mask.to(causal_lm.device), position_ids=positions.to(causal_lm.device),
                   use_cache=True, **inputs, **{_cache_argument(decoder): cache}).last_hidden_state


def run_suffixes(causal_lm, prefix_cache, n_prefix: int, suffixes: list[list[int]], pad: int):
    """Hidden states (batch x width x hidden) of right-padded ``suffixes`` run after a cached prefix of
    ``n_prefix`` tokens."""
    import torch

    width = max(len(s) for s in suffixes)
    ids = torch.full((len(suffixes), width), pad, dtype=torch.long)
    mask = torch.zeros((len(suffixes), n_prefix + width), dtype=torch.long)
    mask[:, :n_prefix] = 1
    for row, suffix in enumerate(suffixes):
        ids[row, : len(suffix)] = torch.tensor(suffix, dtype=torch.long)
        mask[row, n_prefix: n_prefix + len(suffix)] = 1
    with torch.inference_mode():
        return run_after_prefix(causal_lm, prefix_cache, n_prefix, mask, input_ids=ids.to(causal_lm.device))
