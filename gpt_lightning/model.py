"""A GPT language model in plain PyTorch, with nanoGPT's semantics and Hugging Face GPT-2's parameter names.

Nothing here knows about Lightning: the LightningModule in `module.py` wraps this class, and anything else
(a notebook, an export script, a hand-written loop in the benchmark) can use it on its own.

References:
1) OpenAI's GPT-2 release (the architecture and initialisation).
2) Hugging Face's GPT-2 implementation (the parameter names, so weights move across unchanged but for the
   Conv1D transposes handled in `hf.py`).
3) The options that later small-GPT recipes changed, each off by default (GPT-2 as it was): rotary positions
   (RoFormer; Llama), RMSNorm (Llama), QK-norm (OLMo 2, Qwen3, modded-nanogpt, nanochat), ReLU^2 (Primer;
   modded-nanogpt, nanochat), SwiGLU (Shazeer 2020; Llama), untied embeddings (Llama, nanochat), logit
   soft-capping (Gemma 2, modded-nanogpt). See docs/architecture.md for what each did here, measured.
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
        rope: rotary position embeddings (RoFormer, as Llama, modded-nanogpt and nanochat) instead of GPT-2's
            learned position table: q and k are rotated by their position, so attention sees relative positions.
            No wpe (block_size x n_embd fewer parameters); costs a few elementwise ops per layer.
        rope_base: RoPE's base (Llama's rope_theta): the longest wavelength, in positions; 10000 as RoFormer and
            Llama 2, larger for long contexts.
        norm: `layernorm` (GPT-2) or `rmsnorm` (Llama, Gemma, modded-nanogpt, nanochat): scale by the root mean
            square only, no mean subtraction and no bias; slightly cheaper.
        qk_norm: RMSNorm (with a weight per channel) on each head's queries and keys before attention, as OLMo 2,
            Qwen3, modded-nanogpt and nanochat do: bounds the attention logits, steadier at high learning rates.
            2 x head_size parameters per layer and two small norms.
        mlp: the feed-forward block: `gelu` (GPT-2, 4 x n_embd hidden), `relu2` (ReLU squared, Primer; as
            modded-nanogpt and nanochat; same size, cheaper activation) or `swiglu` (SiLU-gated linear unit,
            Shazeer 2020; Llama): three matrices of hidden size 8 x n_embd / 3 rounded to a multiple of 8 (344
            for 128, 2048 for 768), which keeps the MLP's parameters and FLOPs within 1% of GPT-2's (n_embd >= 128).
        tie_embeddings: lm_head shares the token table's weights (GPT-2); false gives lm_head its own matrix
            (Llama, modded-nanogpt, nanochat): vocab x n_embd more parameters (38.6M for GPT-2's vocabulary,
            8K for 65 chars), no extra FLOPs.
        logit_softcap: if set, logits = cap * tanh(logits / cap) (Gemma 2 uses 30, modded-nanogpt 15 to 30):
            bounds the logits so no token grows overconfident early; one tanh over the logits (B x T x vocab).
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
    rope: bool = False
    rope_base: float = 10000.0
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    qk_norm: bool = False
    mlp: Literal["gelu", "relu2", "swiglu"] = "gelu"
    tie_embeddings: bool = True
    logit_softcap: Optional[float] = None

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
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', got {self.norm!r}.")
        if self.mlp not in ("gelu", "relu2", "swiglu"):
            raise ValueError(f"mlp must be 'gelu', 'relu2' or 'swiglu', got {self.mlp!r}.")
        if self.rope and (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"rope rotates pairs of channels, so the head size n_embd / n_head ({self.n_embd // self.n_head}) "
                "must be even; change n_embd or n_head."
            )
        if not self.rope_base > 1.0:
            raise ValueError(f"rope_base must be greater than 1, got {self.rope_base}.")
        if self.logit_softcap is not None and not self.logit_softcap > 0:
            raise ValueError(f"logit_softcap must be positive (or unset for none), got {self.logit_softcap}.")

    @property
    def swiglu_hidden(self) -> int:
        """SwiGLU's hidden size: 8 * n_embd / 3 (three matrices then hold GPT-2's 8 * n_embd^2 parameters),
        rounded to a multiple of 8."""
        return 8 * round(self.n_embd / 3)


def num_params(config: GPTConfig, non_embedding: bool = True) -> int:
    """Parameters of GPT(config), counted on a meta-device build (no memory, no init): exact for every option.
    non_embedding leaves out the lookup tables (GPT.get_num_params), as nanoGPT reports."""
    with torch.device("meta"):
        return GPT(config).get_num_params(non_embedding)


def flops_per_token(config: GPTConfig) -> int:
    """Training FLOPs (forward + backward) per token, by the PaLM paper's estimate (appendix B):
    6N for the weight matmuls plus 12 * L * H * Q * T for attention over a full block (H heads of size Q,
    T = block_size), as nanoGPT's estimate_mfu. N counts lm_head (tied or not) and leaves out the position table
    and an untied token table, which are lookups, not matmuls. (Norms, RoPE and soft-capping are elementwise.)"""
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


class RMSNorm(nn.Module):
    """x / rms(x) * weight, over the last dimension (Llama's RMSNorm, computed as Hugging Face's is: in float32,
    so an exported model gives the same numbers). No mean subtraction and no bias."""

    def __init__(self, ndim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def make_norm(config: GPTConfig) -> nn.Module:
    """The block's and the final norm: GPT-2's LayerNorm or RMSNorm (--model.norm)."""
    return RMSNorm(config.n_embd) if config.norm == "rmsnorm" else LayerNorm(config.n_embd, bias=config.bias)


class Rotary(nn.Module):
    """Rotary position embeddings (RoFormer), in Llama's layout: channel i of a head is paired with channel
    i + head_size / 2 (Hugging Face's rotate_half), so Llama-family weights need no permutation.

    The cos / sin tables are computed in forward, for the positions at hand, not kept as buffers: nothing to save,
    to move between devices or to leave behind on the meta device; a few elementwise ops per layer."""

    def __init__(self, head_size: int, base: float) -> None:
        super().__init__()
        self.head_size, self.base = head_size, base

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """x (B, nh, T, hs) at positions start .. start + T - 1, rotated."""
        T, hs = x.size(2), self.head_size
        inv_freq = 1.0 / (self.base ** (torch.arange(0, hs, 2, device=x.device, dtype=torch.int64).float() / hs))
        pos = torch.arange(start, start + T, device=x.device, dtype=torch.int64).float()
        angles = torch.outer(pos, inv_freq)  # (T, hs/2)
        angles = torch.cat((angles, angles), dim=-1)  # (T, hs): each angle for both channels of its pair
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x[..., : hs // 2], x[..., hs // 2 :]
        rotated_half = torch.cat((-x2, x1), dim=-1)  # (B, nh, T, hs)
        return x * cos + rotated_half * sin


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
        hs = config.n_embd // config.n_head
        # QK-norm (Qwen3's order: normalise each head's q and k, then rotate)
        self.q_norm = RMSNorm(hs) if config.qk_norm else None
        self.k_norm = RMSNorm(hs) if config.qk_norm else None
        self.rotary = Rotary(hs, config.rope_base) if config.rope else None
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
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        past = self.kv_cache.length if self.kv_cache is not None else 0
        if self.rotary is not None:
            q, k = self.rotary(q, past), self.rotary(k, past)  # the cache holds keys already rotated
        if self.kv_cache is not None:
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


class ReLU2(nn.Module):
    """relu(x)^2 (Primer, So et al. 2021), modded-nanogpt's and nanochat's MLP activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


class MLP(nn.Module):
    """GPT-2's feed-forward block, n_embd -> 4 n_embd -> n_embd, with GELU (or ReLU^2: --model.mlp relu2)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        # exact erf GELU by default; GPT-2 was trained with the tanh approximation (differs by < 1e-3), which
        # imported GPT-2 weights keep so their logits match the original's
        self.gelu = ReLU2() if config.mlp == "relu2" else nn.GELU(approximate=config.gelu_approximate)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class SwiGLU(nn.Module):
    """Llama's feed-forward block: c_proj(silu(gate) * up), gate and up from one matmul (c_fc holds gate's rows
    then up's, Llama's gate_proj and up_proj stacked). Hidden size config.swiglu_hidden (~8/3 n_embd)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.hidden = config.swiglu_hidden
        self.c_fc = nn.Linear(config.n_embd, 2 * self.hidden, bias=config.bias)
        self.c_proj = nn.Linear(self.hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).split(self.hidden, dim=-1)  # (B, T, hidden) each
        return self.dropout(self.c_proj(F.silu(gate) * up))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = SwiGLU(config) if config.mlp == "swiglu" else MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        modules = dict(wte=nn.Embedding(config.padded_vocab_size, config.n_embd))
        if not config.rope:  # learned absolute positions (GPT-2); RoPE rotates q and k in attention instead
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        modules.update(
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=make_norm(config),
        )
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        if config.tie_embeddings:
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
        """Number of parameters. non_embedding (the default, as nanoGPT reports) leaves out the tables that are
        only looked up: the position table, and the token table when it is not tied to lm_head (tied, it is
        lm_head's matmul weights and stays in)."""
        n_params = sum(p.numel() for p in self.parameters())  # a tied tensor counts once
        if non_embedding and "wpe" in self.transformer:
            n_params -= self.transformer.wpe.weight.numel()
        if non_embedding and not self.config.tie_embeddings:
            n_params -= self.transformer.wte.weight.numel()
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
        x = self.transformer.wte(idx)  # (b, t, n_embd)
        if "wpe" in self.transformer:
            pos = torch.arange(start, start + t, dtype=torch.long, device=idx.device)  # (t,)
            x = x + self.transformer.wpe(pos)  # (t, n_embd) broadcast over the batch
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.mask_padding(self.softcap(self.lm_head(x)))  # (b, t, vocab)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            # inference: the last position is all that is needed; the list index keeps the time dimension
            logits = self.mask_padding(self.softcap(self.lm_head(x[:, [-1], :])))  # (b, 1, vocab)
            loss = None
        return logits, loss

    def softcap(self, logits: torch.Tensor) -> torch.Tensor:
        """cap * tanh(logits / cap) with --model.logit_softcap (Gemma 2): every logit within (-cap, cap)."""
        cap = self.config.logit_softcap
        return logits if cap is None else cap * torch.tanh(logits / cap)

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
        if "wpe" in self.transformer:  # RoPE has no table to crop
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
        positions leave no cheaper exact way: after a crop every token sits at a new position. RoPE's relative
        positions would allow sliding the cache, but not bit for bit like the uncached model, so it crops too.
        So past block_size each step costs a full forward, cache or not.)
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
