"""Weight maps between minigpt and transformers (GPT-2, Llama, Qwen3, Mixtral).

Used by the equivalence tests (transformers is the oracle) and by `export.py`. The maps are short
because minigpt names its parameters after the checkpoints they come from:

    minigpt                           GPT-2 (Conv1D: weights transposed)   Llama / Qwen3 / Mixtral
    tok_emb                           transformer.wte                       model.embed_tokens
    pos_emb                           transformer.wpe                       -
    blocks.i.attn_norm                transformer.h.i.ln_1                  model.layers.i.input_layernorm
    blocks.i.attn.{q,k,v}_proj        transformer.h.i.attn.c_attn (fused)   model.layers.i.self_attn.{q,k,v}_proj
    blocks.i.attn.o_proj              transformer.h.i.attn.c_proj           model.layers.i.self_attn.o_proj
    blocks.i.attn.{q,k}_norm          -                                     (Qwen3) self_attn.{q,k}_norm
    blocks.i.mlp_norm                 transformer.h.i.ln_2                  model.layers.i.post_attention_layernorm
    blocks.i.mlp.c_fc / c_proj        transformer.h.i.mlp.c_fc / c_proj     -
    blocks.i.mlp.w1 / w3 / w2         -                                     mlp.gate_proj / up_proj / down_proj
    blocks.i.mlp.router               -                                     (Mixtral) mlp.gate.weight
    blocks.i.mlp.experts.e.w1|w3|w2   -                                     (Mixtral) mlp.experts.gate_up_proj[e] (w1 rows,
                                                                            then w3 rows), mlp.experts.down_proj[e]
    norm_f                            transformer.ln_f                      model.norm
    lm_head                           lm_head                               lm_head
"""

from __future__ import annotations

import torch

from .config import GPTConfig
from .errors import ConfigError
from .i18n import tr


def architecture(cfg: GPTConfig) -> str:
    """Which transformers architecture computes exactly what this config computes."""
    vanilla = dict(norm="layernorm", mlp="gelu", pos="learned", attn_logits="standard", bias=True,
                   n_experts=0)
    if all(getattr(cfg, k) == v for k, v in vanilla.items()) and cfg.kv_heads == cfg.n_head:
        return "gpt2"
    modern = dict(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)
    if cfg.rope_scaling is not None and cfg.rope_scaling["type"] == "ntk":
        raise ConfigError(tr("static NTK-aware RoPE scaling has no transformers rope_type; use 'dynamic' or 'yarn'",
                             "静的な NTK-aware RoPE スケーリングに対応する transformers の rope_type はありません。"
                             "'dynamic' か 'yarn' を使ってください"))
    if all(getattr(cfg, k) == v for k, v in modern.items()):
        if cfg.n_experts:
            if cfg.attn_logits == "standard" and cfg.moe_gating == "mixtral" and cfg.capacity_factor is None:
                return "mixtral"
        elif cfg.attn_logits == "standard":
            return "llama"
        elif cfg.attn_logits == "qk_norm":
            return "qwen3"
    raise ConfigError(tr("this GPTConfig has no exact transformers equivalent (supported: vanilla GPT-2; "
                            "rmsnorm+swiglu+rope without biases as Llama, Qwen3 with qk_norm, Mixtral with MoE "
                            "using mixtral gating and no capacity limit)",
                            "この GPTConfig と同じ計算をする transformers のアーキテクチャはありません (対応しているのは: "
                            "素の GPT-2、バイアスなしの rmsnorm+swiglu+rope は Llama、qk_norm 付きは Qwen3、"
                            "mixtral ゲーティングで容量制限なしの MoE は Mixtral)"))


# minigpt's rope_scaling keys that transformers' rope_parameters keep under the same name, per type
_ROPE_KEYS = {"linear": (), "dynamic": (), "yarn": ("beta_fast", "beta_slow", "attention_factor"),
              "llama3": ("low_freq_factor", "high_freq_factor")}
_LLAMA3_DEFAULTS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0}


def rope_parameters(cfg: GPTConfig) -> dict:
    """transformers 5.x `rope_parameters` (which replaced `rope_scaling`) for cfg's RoPE.

    `original_max_position_embeddings` (the context the scaling is relative to) is always written
    for yarn, llama3 and dynamic; for dynamic, transformers reads it from `max_position_embeddings`,
    which `hf_config` sets to it (see `max_position_embeddings`).
    """
    params = {"rope_type": "default", "rope_theta": cfg.rope_base}
    sc = cfg.rope_scaling
    if sc is None:
        return params
    kind = sc["type"]
    if kind == "ntk":
        raise ConfigError(tr("static NTK-aware scaling has no transformers rope_type; use 'dynamic' or 'yarn'",
                             "静的な NTK-aware スケーリングに対応する transformers の rope_type はありません。"
                             "'dynamic' か 'yarn' を使ってください"))
    params.update(rope_type=kind, factor=float(sc["factor"]))
    if kind in ("yarn", "llama3", "dynamic"):
        params["original_max_position_embeddings"] = int(sc.get("original_max_position_embeddings", cfg.block_size))
    for key in _ROPE_KEYS[kind]:
        if key in sc or key in (_LLAMA3_DEFAULTS if kind == "llama3" else {}):
            params[key] = sc.get(key, _LLAMA3_DEFAULTS.get(key))
    return params


def max_position_embeddings(cfg: GPTConfig) -> int:
    """transformers' `max_position_embeddings` for cfg: block_size, except for dynamic NTK, whose
    transformers formula grows the base relative to max_position_embeddings: there it is the
    original context (`original_max_position_embeddings`, block_size when not given)."""
    sc = cfg.rope_scaling
    if sc is not None and sc["type"] == "dynamic":
        return int(sc.get("original_max_position_embeddings", cfg.block_size))
    return cfg.block_size


def rope_scaling_from_hf(rope_parameters: dict | None, max_position_embeddings: int) -> tuple[float, dict | None]:
    """The inverse of `rope_parameters`: (rope_base, rope_scaling) for a GPTConfig."""
    params = dict(rope_parameters or {})
    base = float(params.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return base, None
    if kind not in _ROPE_KEYS:
        raise ConfigError(tr("transformers rope_type {kind!r} has no minigpt equivalent (supported: default, {known})",
                             "transformers の rope_type {kind!r} に対応するものは minigpt にありません (対応: default, {known})",
                             kind=kind, known=", ".join(_ROPE_KEYS)))
    scaling = {"type": kind, "factor": float(params["factor"])}
    if kind in ("yarn", "llama3", "dynamic"):
        original = params.get("original_max_position_embeddings")
        scaling["original_max_position_embeddings"] = int(original if original is not None and kind != "dynamic"
                                                          else max_position_embeddings)
    for key in _ROPE_KEYS[kind]:
        if params.get(key) is not None:
            scaling[key] = params[key]
    return base, scaling


def hf_config(cfg: GPTConfig, **extra):
    """The transformers config of the equivalent model (transformers 5.x names)."""
    import transformers as tf

    arch = architecture(cfg)
    if arch == "gpt2":
        return tf.GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                             n_layer=cfg.n_layer, n_head=cfg.n_head, n_inner=cfg.hidden_dim,
                             activation_function="gelu_new", layer_norm_epsilon=cfg.norm_eps,
                             resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                             tie_word_embeddings=cfg.tie_weights, **extra)
    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.hidden_dim,
                  num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                  num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
                  max_position_embeddings=max_position_embeddings(cfg), rms_norm_eps=cfg.norm_eps,
                  rope_parameters=rope_parameters(cfg), attention_dropout=0.0,
                  tie_word_embeddings=cfg.tie_weights, **extra)
    if arch == "llama":
        return tf.LlamaConfig(**common, attention_bias=False, mlp_bias=False)
    if arch == "qwen3":
        return tf.Qwen3Config(**common, attention_bias=False)
    return tf.MixtralConfig(**common, num_local_experts=cfg.n_experts, num_experts_per_tok=cfg.top_k,
                            router_aux_loss_coef=cfg.aux_loss_coef)


def hf_model_class(cfg: GPTConfig):
    import transformers as tf

    return {"gpt2": tf.GPT2LMHeadModel, "llama": tf.LlamaForCausalLM, "qwen3": tf.Qwen3ForCausalLM,
            "mixtral": tf.MixtralForCausalLM}[architecture(cfg)]


def to_hf_state_dict(model) -> dict[str, torch.Tensor]:
    """minigpt state -> the transformers state dict of `hf_model_class(model.config)`."""
    cfg = model.config
    arch = architecture(cfg)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    if arch == "gpt2":
        out["transformer.wte.weight"] = sd["tok_emb.weight"]
        out["transformer.wpe.weight"] = sd["pos_emb.weight"]
        for i in range(cfg.n_layer):
            p, h = f"blocks.{i}.", f"transformer.h.{i}."
            out[h + "ln_1.weight"], out[h + "ln_1.bias"] = sd[p + "attn_norm.weight"], sd[p + "attn_norm.bias"]
            out[h + "ln_2.weight"], out[h + "ln_2.bias"] = sd[p + "mlp_norm.weight"], sd[p + "mlp_norm.bias"]
            qkv = [sd[p + f"attn.{n}_proj.weight"] for n in "qkv"]
            out[h + "attn.c_attn.weight"] = torch.cat(qkv, 0).t().contiguous()  # Conv1D stores (in, out)
            out[h + "attn.c_attn.bias"] = torch.cat([sd[p + f"attn.{n}_proj.bias"] for n in "qkv"])
            out[h + "attn.c_proj.weight"] = sd[p + "attn.o_proj.weight"].t().contiguous()
            out[h + "attn.c_proj.bias"] = sd[p + "attn.o_proj.bias"]
            for n in ("c_fc", "c_proj"):
                out[h + f"mlp.{n}.weight"] = sd[p + f"mlp.{n}.weight"].t().contiguous()
                out[h + f"mlp.{n}.bias"] = sd[p + f"mlp.{n}.bias"]
        out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = sd["norm_f.weight"], sd["norm_f.bias"]
        out["lm_head.weight"] = sd["lm_head.weight"]
        return out

    out["model.embed_tokens.weight"] = sd["tok_emb.weight"]
    for i in range(cfg.n_layer):
        p, h = f"blocks.{i}.", f"model.layers.{i}."
        out[h + "input_layernorm.weight"] = sd[p + "attn_norm.weight"]
        out[h + "post_attention_layernorm.weight"] = sd[p + "mlp_norm.weight"]
        for n in "qkvo":
            out[h + f"self_attn.{n}_proj.weight"] = sd[p + f"attn.{n}_proj.weight"]
        if arch == "qwen3":
            out[h + "self_attn.q_norm.weight"] = sd[p + "attn.q_norm.weight"]
            out[h + "self_attn.k_norm.weight"] = sd[p + "attn.k_norm.weight"]
        if arch == "mixtral":
            out[h + "mlp.gate.weight"] = sd[p + "mlp.router.weight"]
            E = cfg.n_experts
            out[h + "mlp.experts.gate_up_proj"] = torch.stack([
                torch.cat([sd[p + f"mlp.experts.{e}.w1.weight"], sd[p + f"mlp.experts.{e}.w3.weight"]], 0)
                for e in range(E)])  # (E, 2*hidden, C)
            out[h + "mlp.experts.down_proj"] = torch.stack([sd[p + f"mlp.experts.{e}.w2.weight"] for e in range(E)])
        else:
            out[h + "mlp.gate_proj.weight"] = sd[p + "mlp.w1.weight"]
            out[h + "mlp.up_proj.weight"] = sd[p + "mlp.w3.weight"]
            out[h + "mlp.down_proj.weight"] = sd[p + "mlp.w2.weight"]
    out["model.norm.weight"] = sd["norm_f.weight"]
    out["lm_head.weight"] = sd["lm_head.weight"]
    return out


def from_hf_state_dict(cfg: GPTConfig, hf_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `to_hf_state_dict`: a transformers state dict -> a minigpt state dict."""
    from .model import GPT

    ours = GPT(cfg).state_dict()  # the keys we must fill
    out: dict[str, torch.Tensor] = {}
    arch = architecture(cfg)
    C = cfg.n_embd
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        if arch == "gpt2":
            h = f"transformer.h.{i}."
            w = hf_sd[h + "attn.c_attn.weight"].t()
            b = hf_sd[h + "attn.c_attn.bias"]
            for j, n in enumerate("qkv"):
                out[p + f"attn.{n}_proj.weight"] = w[j * C:(j + 1) * C]
                out[p + f"attn.{n}_proj.bias"] = b[j * C:(j + 1) * C]
            out[p + "attn.o_proj.weight"] = hf_sd[h + "attn.c_proj.weight"].t()
            out[p + "attn.o_proj.bias"] = hf_sd[h + "attn.c_proj.bias"]
            for n in ("c_fc", "c_proj"):
                out[p + f"mlp.{n}.weight"] = hf_sd[h + f"mlp.{n}.weight"].t()
                out[p + f"mlp.{n}.bias"] = hf_sd[h + f"mlp.{n}.bias"]
            for ours_n, hf_n in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
                out[p + f"{ours_n}.weight"] = hf_sd[h + f"{hf_n}.weight"]
                out[p + f"{ours_n}.bias"] = hf_sd[h + f"{hf_n}.bias"]
        elif arch == "mixtral":
            h = f"model.layers.{i}."
            gate_up, down = hf_sd[h + "mlp.experts.gate_up_proj"], hf_sd[h + "mlp.experts.down_proj"]
            hidden = gate_up.shape[1] // 2
            for e in range(cfg.n_experts):
                out[p + f"mlp.experts.{e}.w1.weight"] = gate_up[e, :hidden]
                out[p + f"mlp.experts.{e}.w3.weight"] = gate_up[e, hidden:]
                out[p + f"mlp.experts.{e}.w2.weight"] = down[e]
    # every remaining key maps one to one
    ours_to_hf = _one_to_one_keys(cfg)
    for k in ours:
        if k in out:
            continue
        hk = ours_to_hf.get(k)
        if hk is None or hk not in hf_sd:
            raise KeyError(tr("no transformers weight for {k} (looked for {hk})",
                              "{k} に対応する transformers の重みがありません ({hk} を探しました)", k=k, hk=hk))
        out[k] = hf_sd[hk]
    return {k: v.contiguous() for k, v in out.items()}


def _one_to_one_keys(cfg: GPTConfig) -> dict[str, str]:
    arch = architecture(cfg)
    m = {"lm_head.weight": "lm_head.weight"}
    if arch == "gpt2":
        m.update({"tok_emb.weight": "transformer.wte.weight", "pos_emb.weight": "transformer.wpe.weight",
                  "norm_f.weight": "transformer.ln_f.weight", "norm_f.bias": "transformer.ln_f.bias"})
        return m
    m.update({"tok_emb.weight": "model.embed_tokens.weight", "norm_f.weight": "model.norm.weight"})
    for i in range(cfg.n_layer):
        p, h = f"blocks.{i}.", f"model.layers.{i}."
        m[p + "attn_norm.weight"] = h + "input_layernorm.weight"
        m[p + "mlp_norm.weight"] = h + "post_attention_layernorm.weight"
        for n in "qkvo":
            m[p + f"attn.{n}_proj.weight"] = h + f"self_attn.{n}_proj.weight"
        m[p + "attn.q_norm.weight"] = h + "self_attn.q_norm.weight"
        m[p + "attn.k_norm.weight"] = h + "self_attn.k_norm.weight"
        m[p + "mlp.w1.weight"] = h + "mlp.gate_proj.weight"
        m[p + "mlp.w3.weight"] = h + "mlp.up_proj.weight"
        m[p + "mlp.w2.weight"] = h + "mlp.down_proj.weight"
        m[p + "mlp.router.weight"] = h + "mlp.gate.weight"
    return m


def load_from_hf_model(hf_model, cfg: GPTConfig):
    """A minigpt GPT holding the weights of a transformers model of the matching architecture."""
    from .model import GPT

    model = GPT(cfg)
    sd = from_hf_state_dict(cfg, hf_model.state_dict())
    model.load_state_dict(sd, strict=True)
    return model


def hf_model_from_minigpt(model, **config_extra):
    """A transformers model holding minigpt's weights, in eval mode. `config_extra` goes to its
    config (e.g. eos_token_id)."""
    cfg = model.config
    hf = hf_model_class(cfg)(hf_config(cfg, **config_extra))
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model), strict=False)
    missing = [k for k in missing if not (cfg.tie_weights and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(tr("weight map incomplete: missing {missing}, unexpected {unexpected}",
                             "重みの対応が不完全です: 足りないもの {missing}、余分なもの {unexpected}",
                             missing=missing, unexpected=unexpected))
    if cfg.tie_weights:
        hf.tie_weights()
    return hf.eval()
