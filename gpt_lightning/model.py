"""A GPT language model in plain PyTorch, with nanoGPT's semantics and Hugging Face GPT-2's parameter names.

Nothing here knows about Lightning: the LightningModule in `module.py` wraps this class, and anything else
(a notebook, an export script, a hand-written loop in the benchmark) can use it on its own.

References:
1) OpenAI's GPT-2 release (the architecture and initialisation).
2) Hugging Face's GPT-2 implementation (the parameter names, so weights move across unchanged but for the
   Conv1D transposes handled in `hf.py`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    """The architecture: every field is a `--model.<field>` option of the CLI, saved in each checkpoint and
    checked on resume, validate, init_from and export. The one list of what shapes the network.

    To try an idea, add a field here with a default that keeps GPT-2 (so every preset, checkpoint and test is
    unchanged) and use it in the classes below; nothing else needs editing (docs/extending.md). Its line under
    Attributes is its `--help` text.

    Attributes:
        vocab_size: tokens in the vocabulary; linked from the data's meta.json by the CLI.
        block_size: longest context (the position table's length); linked from --data.block_size by the CLI;
            shorter than a pretrained model's crops its position table.
        n_layer: transformer blocks.
        n_head: attention heads per block.
        n_embd: width of the residual stream, a multiple of n_head.
        dropout: dropout probability (0 for pretraining, ~0.1-0.2 for small data or finetuning).
        bias: biases in Linear and LayerNorm layers, as GPT-2 has; False is a bit better and faster.
        gelu_approximate: `none` for the exact GELU (nanoGPT), `tanh` for GPT-2's original approximation
            (differs by < 1e-3; imported GPT-2 weights keep it so their logits match the original's).
        pad_vocab_multiple: give the token table (and lm_head) vocab_size rounded up to a multiple of this many
            rows: GPT-2's 50257 becomes nanoGPT's 50304, whose round matmul dimension runs faster on GPUs (nanoGPT
            reports about 25%). The extra ids are masked (never predicted, sampled or scored, so losses are those of
            the unpadded model), and `export` writes the unpadded model. Unset: 64 for GPT-2 BPE, 1 otherwise, or
            the pretrained model's.
    """

    vocab_size: int = 50304  # nanoGPT's default: GPT-2's 50257 padded to 50304
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    gelu_approximate: Literal["none", "tanh"] = "none"
    pad_vocab_multiple: int = 1

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the token table: vocab_size rounded up to a multiple of pad_vocab_multiple."""
        return -(-self.vocab_size // self.pad_vocab_multiple) * self.pad_vocab_multiple

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"choose n_head among {[h for h in range(1, self.n_embd + 1) if self.n_embd % h == 0 and h <= 64]}."
            )
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "pad_vocab_multiple"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if self.gelu_approximate not in ("none", "tanh"):
            raise ValueError(f"gelu_approximate must be 'none' or 'tanh', got {self.gelu_approximate!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")


def num_params(config: GPTConfig, non_embedding: bool = True) -> int:
    """Parameters of GPT(config), counted on a meta-device build (no memory, no init): exact for every option.
    non_embedding leaves out the position table, as nanoGPT reports."""
    with torch.device("meta"):
        return GPT(config).get_num_params(non_embedding)


def flops_per_token(config: GPTConfig) -> int:
    """Training FLOPs (forward + backward) per token, by the PaLM paper's estimate (appendix B):
    6N for the weight matmuls plus 12 * L * H * Q * T for attention over a full block (H heads of size Q,
    T = block_size), as nanoGPT's estimate_mfu. N counts lm_head (tied or not) and leaves out the position table,
    which is a lookup, not a matmul."""
    L, H, Q, T = config.n_layer, config.n_head, config.n_embd // config.n_head, config.block_size
    return 6 * num_params(config) + 12 * L * H * Q * T


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's own takes no `bias=False` before 2.1)."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class KVCache:
    """Keys and values of the positions seen so far, for one attention layer.

    A plain object, not a Module, so it never shows up in state_dict, named_modules or FSDP wrapping.
    Preallocated to block_size so decoding appends in place. Generation always fills it from position 0
    (learned absolute positions mean a cropped context must be recomputed, not shifted), so `length` is
    both the number of cached positions and the position of the next token.
    """

    def __init__(self, batch_size: int, n_head: int, block_size: int, head_size: int, device, dtype) -> None:
        shape = (batch_size, n_head, block_size, head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) after the cached positions; return all keys and values so far."""
        end = self.length + k.size(2)
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        # key, query and value projections for all heads, in one matmul
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        # flash attention where PyTorch has it (>= 2.0); the masked fallback gives the same numbers, slower
        self.flash = hasattr(F, "scaled_dot_product_attention")
        if not self.flash:
            mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
            self.register_buffer("mask", mask.view(1, 1, config.block_size, config.block_size), persistent=False)
        self.kv_cache: Optional[KVCache] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()  # batch, sequence length, embedding width (n_embd)
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        past = 0
        if self.kv_cache is not None:
            past = self.kv_cache.length
            k, v = self.kv_cache.append(k, v)  # (B, nh, past + T, hs)
        # A prompt (past == 0) needs the causal mask; a single new token may attend to everything cached.
        # Generation never feeds several tokens after a non-empty cache, so no other mask shape is needed.
        if past and T > 1:
            raise ValueError("KVCache: after the prompt, feed one token at a time.")
        causal = past == 0
        if self.flash:
            dropout_p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=dropout_p, is_causal=causal)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, past + T)
            if causal:
                att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v  # (B, nh, T, past + T) x (B, nh, past + T, hs) -> (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        # exact erf GELU by default; GPT-2 was trained with the tanh approximation (differs by < 1e-3), which
        # imported GPT-2 weights keep so their logits match the original's
        self.gelu = nn.GELU(approximate=config.gelu_approximate)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.padded_vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        # Weight tying: the token embedding is also the output projection (saves vocab x n_embd parameters).
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections that write into the residual stream: each block adds two,
        # so their std shrinks with depth to keep the stream's variance in check.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters. The position table is left out by default, as nanoGPT reports; the token
        table stays in because, tied to lm_head, it is used as weights in the final layer."""
        n_params = sum(p.numel() for p in self.parameters())  # a tied tensor counts once
        if non_embedding and "wpe" in self.transformer:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """idx (B, T) token ids. With targets (B, T): logits (B, T, vocab) and the mean cross-entropy, ignoring
        targets of -1. Without: logits of the last position only, (B, 1, vocab), the one generation needs.
        vocab is config.padded_vocab_size; the logits of the padding ids (from config.vocab_size on) are -inf."""
        b, t = idx.size()
        start = self._cache_length()
        if start + t > self.config.block_size:
            raise ValueError(
                f"Cannot forward a sequence of length {start + t}: the model's block_size is "
                f"{self.config.block_size}. Crop the input to its last {self.config.block_size} tokens."
            )
        pos = torch.arange(start, start + t, dtype=torch.long, device=idx.device)  # (t,)
        tok_emb = self.transformer.wte(idx)  # (b, t, n_embd)
        pos_emb = self.transformer.wpe(pos)  # (t, n_embd)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.mask_padding(self.lm_head(x))  # (b, t, vocab)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            # inference: the last position is all that is needed; the list index keeps the time dimension
            logits = self.mask_padding(self.lm_head(x[:, [-1], :]))  # (b, 1, vocab)
            loss = None
        return logits, loss

    def mask_padding(self, logits: torch.Tensor) -> torch.Tensor:
        """-inf for the padding ids, so that they take no probability: the loss, sampling and any scoring are
        exactly those of an unpadded model. (nanoGPT leaves them in the softmax, where training pushes them
        down; masking also keeps an imported 50257-row GPT-2 exact once padded.) In place: the matmul that made
        the logits does not need them for its backward."""
        if self.config.padded_vocab_size > self.config.vocab_size:
            logits[..., self.config.vocab_size :] = float("-inf")
        return logits

    def crop_block_size(self, block_size: int) -> None:
        """Shrink the position table, e.g. to finetune GPT-2 (block 1024) on shorter windows."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"crop_block_size: block_size must be in [1, {self.config.block_size}], got {block_size}.")
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])
        for block in self.transformer.h:
            if hasattr(block.attn, "mask"):
                block.attn.mask = block.attn.mask[:, :, :block_size, :block_size]

    # ---------------------------------------------------------------- generation

    def _cache_length(self) -> int:
        cache = self.transformer.h[0].attn.kv_cache
        return cache.length if cache is not None else 0

    def _set_kv_cache(self, batch_size: Optional[int]) -> None:
        """Give every attention layer a fresh, empty cache (batch_size None: remove the caches)."""
        ref = self.lm_head.weight
        hs = self.config.n_embd // self.config.n_head
        for block in self.transformer.h:
            block.attn.kv_cache = (
                None
                if batch_size is None
                else KVCache(batch_size, self.config.n_head, self.config.block_size, hs, ref.device, ref.dtype)
            )

    @torch.no_grad()
    def generate_tokens(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        kv_cache: bool = True,
        generator: Optional[torch.Generator] = None,
        vocab_size: Optional[int] = None,
    ) -> Iterator[torch.Tensor]:
        """Yield max_new_tokens next tokens (B, 1) one at a time, continuing the token ids idx (B, T).

        temperature 0 is greedy (argmax). With kv_cache the prompt is run once and each new token attends to
        the cached keys and values; once the sequence outgrows block_size the context is cropped to its last
        block_size tokens and recomputed, as without the cache, so both give the same tokens. (Learned absolute
        positions leave no cheaper exact way: after a crop every token sits at a new position. So past
        block_size each step costs a full forward, cache or not.)
        vocab_size: draw only among the first vocab_size ids, those the tokenizer can decode (GPT-2's 50257
        of the 50304 a padded model scores); None: all of them.
        """
        check_sampling_args(temperature=temperature, top_k=top_k, top_p=top_p)
        block_size = self.config.block_size
        try:
            if kv_cache:
                self._set_kv_cache(idx.size(0))
            pending = idx  # tokens the model has not seen yet
            for _ in range(max_new_tokens):
                if not kv_cache or self._cache_length() + pending.size(1) > block_size:
                    # no cache, or the cache is full: start over from the last block_size tokens
                    if kv_cache:
                        self._set_kv_cache(idx.size(0))
                    pending = idx[:, -block_size:]
                # forward, not __call__: a model compiled in place (module.py's configure_model) would recompile
                # as the cache length changes; decoding one token at a time is cheap enough in eager mode
                logits, _ = self.forward(pending)
                logits = logits[:, -1, :vocab_size]  # (B, vocab): a prefix, so ids keep their meaning
                next_token = sample_next_token(
                    logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
                )  # (B, 1)
                idx = torch.cat((idx, next_token), dim=1)
                pending = next_token
                yield next_token
        finally:
            self._set_kv_cache(None)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
        """idx (B, T) followed by max_new_tokens sampled tokens: (B, T + max_new_tokens)."""
        new = list(self.generate_tokens(idx, max_new_tokens, **kwargs))
        return torch.cat([idx, *new], dim=1)


def check_sampling_args(temperature: float, top_k: Optional[int] = None, top_p: Optional[float] = None) -> None:
    """Raise ValueError, saying what to pass instead, for settings that define no distribution. The one check
    of sampling settings: generation.Sampling runs it when it is built, generate_tokens for direct callers."""
    if not temperature >= 0:  # (NaN too)
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 (or None for the whole vocabulary), got {top_k}.")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (or None for no nucleus cut), got {top_p}.")


def sample_next_token(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Pick the next token (B, 1) from logits (B, vocab): argmax when temperature is 0, else a sample from
    softmax(logits / temperature) restricted to the top_k tokens and then to the top_p probability mass."""
    if temperature == 0:
        return torch.argmax(logits, dim=-1, keepdim=True)
    probs = next_token_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def next_token_probs(
    logits: torch.Tensor, *, temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None
) -> torch.Tensor:
    """The sampling distribution (B, vocab) that sample_next_token draws from (temperature > 0)."""
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, [-1]]  # (B, 1): the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p: drop a token when the mass before it already does
        drop_sorted = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs
