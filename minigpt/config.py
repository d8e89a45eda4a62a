"""The model's configuration: one dataclass with an explicit switch per idea the course teaches.

Every chapter flips one switch. The vanilla GPT-2 of chapter 01 is the default; the modern
decoder of chapter 09 is the same dataclass with other values:

    >>> cfg = GPTConfig(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)
    >>> cfg.head_dim
    64

Invalid combinations raise ConfigError (a ValueError) naming the fields, before any tensor is built.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import ConfigError
from .i18n import tr

NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
POSITIONS = ("learned", "rope")
ATTN_LOGITS = ("standard", "qk_norm", "softcap")
ATTN_IMPLS = ("manual", "sdpa")
MOE_GATINGS = ("mixtral", "switch")
ROPE_SCALINGS = ("linear", "ntk", "dynamic", "yarn", "llama3")


@dataclass
class GPTConfig:
    # sizes
    vocab_size: int = 50257
    block_size: int = 256  # the context length the model is trained at
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    n_kv_head: int | None = None  # None: = n_head (multi-head); 1: multi-query; else grouped-query
    dropout: float = 0.0
    bias: bool = True  # biases in the linear layers and LayerNorm (GPT-2: True, Llama: False)
    # chapter 05: normalisation
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    norm_eps: float = 1e-5  # must match a checkpoint's (GPT-2/Llama-2: 1e-5, Llama-3/Qwen: 1e-6)
    # chapter 06: the feed-forward network
    mlp: str = "gelu"  # "gelu" (4d hidden, tanh GELU) | "swiglu" (w2(silu(w1 x) * w3 x))
    mlp_hidden: int | None = None  # None: 4*n_embd for gelu, swiglu_hidden(n_embd) for swiglu
    multiple_of: int = 32  # SwiGLU hidden size is rounded up to a multiple of this
    # chapter 04 and 11: positions
    pos: str = "learned"  # "learned" absolute embeddings | "rope" rotary embeddings
    rope_base: float = 10000.0
    # {"type": "linear"|"ntk"|"dynamic"|"yarn"|"llama3", "factor": s, optional
    #  "original_max_position_embeddings" (default block_size), yarn's beta_fast/beta_slow/attention_factor,
    #  llama3's low_freq_factor/high_freq_factor}
    rope_scaling: dict | None = None
    # chapter 07: attention logits
    attn_logits: str = "standard"  # "standard" q.k/sqrt(d) | "qk_norm" | "softcap"
    softcap: float = 50.0  # c in c * tanh(x / c), used with attn_logits="softcap"
    # chapter 08: Mixture-of-Experts (n_experts=0 means a dense MLP)
    n_experts: int = 0
    top_k: int = 2
    moe_gating: str = "mixtral"  # "mixtral": top-k of softmax, renormalised | "switch": raw probabilities
    aux_loss_coef: float = 0.01  # load-balancing loss N * sum(f_i * P_i)
    z_loss_coef: float = 0.001  # router z-loss mean(logsumexp(logits)^2)
    capacity_factor: float | None = None  # None: no capacity limit (no token is dropped)
    # chapter 10: inference
    tie_weights: bool = True  # lm_head shares the token embedding matrix
    attn_impl: str = "manual"  # "manual" (written out) | "sdpa" (F.scaled_dot_product_attention)
    init_std: float = 0.02

    def __post_init__(self):
        self.validate()

    # ----------------------------------------------------------------- derived sizes
    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def hidden_dim(self) -> int:
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return 4 * self.n_embd if self.mlp == "gelu" else swiglu_hidden(self.n_embd, self.multiple_of)

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        def bad(fields: str, en: str, ja: str, **values):
            raise ConfigError(tr("GPTConfig: {fields}: " + en, "GPTConfig: {fields}: " + ja, fields=fields, **values))

        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                bad(name, "must be a positive integer, got {v!r}", "正の整数にしてください（{v!r} が指定されました）",
                    v=getattr(self, name))
        choices = {"norm": NORMS, "mlp": MLPS, "pos": POSITIONS, "attn_logits": ATTN_LOGITS,
                   "attn_impl": ATTN_IMPLS, "moe_gating": MOE_GATINGS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                bad(name, "must be one of {allowed}, got {v!r}", "{allowed} のいずれかにしてください（{v!r} が指定されました）",
                    allowed=allowed, v=getattr(self, name))
        if self.n_embd % self.n_head:
            bad("n_embd, n_head", "n_embd ({c}) must be divisible by n_head ({h})",
                "n_embd（{c}）は n_head（{h}）で割り切れる値にしてください", c=self.n_embd, h=self.n_head)
        if self.n_kv_head is not None:
            if self.n_kv_head <= 0 or self.n_head % self.n_kv_head:
                bad("n_kv_head, n_head", "n_head ({h}) must be a multiple of n_kv_head ({kv})",
                    "n_head（{h}）は n_kv_head（{kv}）の倍数にしてください", h=self.n_head, kv=self.n_kv_head)
        if self.pos == "rope" and self.head_dim % 2:
            bad("pos, n_embd, n_head", "rope rotates pairs of dimensions: head_dim = {d} must be even",
                "RoPE は次元を2つずつ組にして回転させるため、head_dim（{d}）は偶数にしてください", d=self.head_dim)
        if self.rope_scaling is not None:
            if self.pos != "rope":
                bad("rope_scaling, pos", "rope_scaling needs pos='rope'", "rope_scaling には pos='rope' が必要です")
            kind = self.rope_scaling.get("type")
            if kind not in ROPE_SCALINGS:
                bad("rope_scaling", "'type' must be one of {allowed}, got {v!r}",
                    "'type' は {allowed} のいずれかにしてください（{v!r} が指定されました）", allowed=ROPE_SCALINGS, v=kind)
            if not self.rope_scaling.get("factor", 0) >= 1:
                bad("rope_scaling", "'factor' must be a number >= 1", "'factor' は 1 以上の数にしてください")
            original = self.rope_scaling.get("original_max_position_embeddings")
            if original is not None and (not isinstance(original, int) or original <= 0):
                bad("rope_scaling", "'original_max_position_embeddings' must be a positive integer, got {v!r}",
                    "'original_max_position_embeddings' は正の整数にしてください（{v!r} が指定されました）", v=original)
            if kind == "llama3" and not (self.rope_scaling.get("high_freq_factor", 4.0)
                                         > self.rope_scaling.get("low_freq_factor", 1.0)):
                bad("rope_scaling", "llama3: 'high_freq_factor' must be larger than 'low_freq_factor'",
                    "llama3: 'high_freq_factor' は 'low_freq_factor' より大きくしてください")
        if not 0.0 <= self.dropout < 1.0:
            bad("dropout", "must be in [0, 1), got {v}", "0 以上 1 未満にしてください（{v} が指定されました）", v=self.dropout)
        if self.softcap <= 0:
            bad("softcap", "must be positive", "正の数にしてください")
        if self.norm_eps <= 0:
            bad("norm_eps", "must be positive", "正の数にしてください")
        if self.n_experts < 0:
            bad("n_experts", "must be >= 0 (0 means a dense MLP)", "0 以上にしてください（0 は通常の MLP を意味します）")
        if self.n_experts:
            if not 1 <= self.top_k <= self.n_experts:
                bad("top_k, n_experts", "top_k ({k}) must be between 1 and n_experts ({n})",
                    "top_k（{k}）は 1 以上 n_experts（{n}）以下にしてください", k=self.top_k, n=self.n_experts)
            if self.mlp != "swiglu":
                bad("mlp, n_experts", "the experts are SwiGLU MLPs: set mlp='swiglu'",
                    "エキスパートは SwiGLU MLP です。mlp='swiglu' を指定してください")
            if self.capacity_factor is not None and self.capacity_factor <= 0:
                bad("capacity_factor", "must be positive or None", "正の数か None にしてください")
        if self.mlp_hidden is not None and self.mlp_hidden <= 0:
            bad("mlp_hidden", "must be positive or None", "正の整数か None にしてください")

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(tr("GPTConfig: unknown fields {unknown}; is this checkpoint from a newer minigpt? "
                                 "Update minigpt (pip install -U) or remove the fields",
                                 "GPTConfig: 不明なフィールド {unknown} があります。新しい minigpt で作ったチェックポイント"
                                 "かもしれません。minigpt を更新する（pip install -U）か、そのフィールドを削除してください",
                                 unknown=unknown))
        return cls(**d)

    def replace(self, **changes) -> "GPTConfig":
        return dataclasses.replace(self, **changes)


def swiglu_hidden(n_embd: int, multiple_of: int = 32) -> int:
    """Hidden size of a SwiGLU MLP with about the parameters of a 4*n_embd GELU MLP.

    A GELU MLP has 2 matrices of d x 4d = 8d^2 parameters; SwiGLU has 3 of d x h, so h = 8d/3,
    rounded up to a multiple of `multiple_of` (Llama's rule, for fast matmuls):

    >>> swiglu_hidden(4096, 256)   # Llama-2-7B
    11008
    """
    hidden = int(8 * n_embd / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


def llama_ffn_hidden(dim: int, multiple_of: int, ffn_dim_multiplier: float | None = None) -> int:
    """The SwiGLU hidden size of Meta's Llama code (`FeedForward` in llama/model.py), which is a
    checkpoint's `intermediate_size`: int(2/3 of 4*dim), then times `ffn_dim_multiplier` (truncated
    to an int) when the model has one, then rounded up to a multiple of `multiple_of`.

    >>> llama_ffn_hidden(4096, 1024, 1.3)   # Llama-3-8B
    14336
    """
    hidden = int(2 * (4 * dim) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


# ------------------------------------------------------------------------------- presets
# Budgets are matched: `gpt2`, `modern` and `moe` have about the same parameters per token
# (MoE: about the same *active* parameters), so their curves compare at equal compute.
_BASE = dict(block_size=128, n_layer=4, n_head=4, n_embd=192, dropout=0.0)
_MODERN = dict(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)

PRESETS: dict[str, dict] = {
    # tests: a model that builds and runs in milliseconds
    "tiny": dict(block_size=32, n_layer=2, n_head=2, n_embd=32, vocab_size=256),
    "tiny-modern": dict(block_size=32, n_layer=2, n_head=2, n_embd=32, vocab_size=256, **_MODERN),
    "tiny-moe": dict(block_size=32, n_layer=2, n_head=2, n_embd=32, vocab_size=256, **_MODERN,
                     n_experts=4, top_k=2),
    # the course's three architectures (vocab_size is set from the tokenizer)
    "gpt2": dict(_BASE, vocab_size=50257),
    "modern": dict(_BASE, vocab_size=8000, **_MODERN),
    "moe": dict(_BASE, vocab_size=8000, **_MODERN, n_experts=8, top_k=2, mlp_hidden=256),  # 2 x 256 = dense 512
    # `make demo`: the modern architecture, sized for a few minutes on a 2-core CPU
    "demo": dict(block_size=128, n_layer=4, n_head=4, n_embd=192, vocab_size=8000, **_MODERN),
    # one 80 GB GPU (bf16): ~100M parameters with a 32k vocabulary (docs/scaling.md)
    "gpu-base": dict(block_size=1024, n_layer=12, n_head=12, n_embd=768, n_kv_head=4,
                     vocab_size=32000, **_MODERN, attn_impl="sdpa"),
}


def get_preset(name: str, **overrides) -> GPTConfig:
    """A GPTConfig from a preset name, with any field overridden: get_preset("modern", vocab_size=8000)."""
    if name not in PRESETS:
        raise ConfigError(tr("unknown preset {name!r}; choose one of {names}",
                             "プリセット {name!r} はありません。{names} のいずれかを選んでください",
                             name=name, names=sorted(PRESETS)))
    return GPTConfig(**{**PRESETS[name], **overrides})
