"""Model architectures: the shapes the planner needs, and the built-in catalog of open models.

An ``Architecture`` is enough to count parameters (total and active per token), size a KV
cache layer by layer (grouped-query attention, sliding-window layers, multi-head latent
attention) and count FLOPs. It comes from the catalog (``models.toml``, sources beside the
figures), a GGUF header or a Hugging Face ``config.json`` (``deskai.planner.readers``).
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

from deskai.errors import InvalidInputError, UnknownArchitectureError


@dataclass(frozen=True, slots=True)
class Architecture:
    """A decoder-only transformer, dense or mixture-of-experts."""

    name: str
    family: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    context: int
    tied: bool = False
    qkv_bias: bool = False
    # mixture of experts
    experts: int = 0
    active_experts: int = 0
    shared_experts: int = 0
    expert_ffn: int = 0
    dense_layers: int = 0
    # sliding-window attention: every swa_pattern-th layer is global, the rest see the window
    sliding_window: int = 0
    swa_pattern: int = 0
    # multi-head latent attention (DeepSeek): the cache holds one latent per token and layer
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_dim: int = 0
    qk_nope_dim: int = 0
    v_head_dim: int = 0
    native_quant: str | None = None
    aliases: tuple[str, ...] = ()
    params_published: float | None = None
    active_params_published: float | None = None
    source: str = ""
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads", "kv_heads", "head_dim", "vocab", "context"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"architecture {self.name!r}: {name} must be positive")

    # -- layer kinds -------------------------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    def is_sliding(self, layer: int) -> bool:
        """Whether ``layer`` attends only to the last ``sliding_window`` tokens."""
        if self.sliding_window <= 0 or self.swa_pattern <= 0:
            return False
        return (layer + 1) % self.swa_pattern != 0

    def is_moe_layer(self, layer: int) -> bool:
        return self.is_moe and layer >= self.dense_layers

    # -- parameters --------------------------------------------------------------------------

    def attention_params(self) -> int:
        """Weights of one attention block (projections and biases)."""
        if self.is_mla:
            qk_dim = self.qk_nope_dim + self.qk_rope_dim
            q = (self.hidden * self.q_lora_rank + self.q_lora_rank * self.heads * qk_dim
                 if self.q_lora_rank else self.hidden * self.heads * qk_dim)
            kv = (self.hidden * (self.kv_lora_rank + self.qk_rope_dim)
                  + self.kv_lora_rank * self.heads * (self.qk_nope_dim + self.v_head_dim))
            return q + kv + self.heads * self.v_head_dim * self.hidden
        q_out = 2 * self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        return q_out + kv + bias

    def ffn_params(self, layer: int, *, active: bool = False) -> int:
        """Weights of one gated FFN (three matrices) or MoE block; ``active``: per token."""
        if not self.is_moe_layer(layer):
            return 3 * self.hidden * self.ffn
        routed = self.active_experts if active else self.experts
        per_expert = 3 * self.hidden * self.expert_ffn
        return (routed + self.shared_experts) * per_expert + self.hidden * self.experts

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def output_params(self) -> int:
        """The LM head; a tied model reuses the embedding (no extra weights)."""
        return 0 if self.tied else self.vocab * self.hidden

    def block_params(self, *, active: bool = False) -> int:
        """All transformer blocks (attention, FFN/experts, norms)."""
        norms = 2 * self.hidden
        return sum(self.attention_params() + self.ffn_params(i, active=active) + norms
                   for i in range(self.layers))

    def expert_params(self) -> int:
        """Routed-expert weights (the part MoE reads only a slice of per token)."""
        return sum(self.experts * 3 * self.hidden * self.expert_ffn
                   for i in range(self.layers) if self.is_moe_layer(i))

    @property
    def params(self) -> int:
        return self.block_params() + self.embedding_params() + self.output_params()

    @property
    def active_params(self) -> int:
        """Parameters one token's forward pass multiplies with.

        The input embedding is a row lookup, not a matmul, so it is left out; the LM head
        (tied or not) is in. This is the convention of OpenAI's and DeepSeek's "active".
        """
        return self.block_params(active=True) + self.vocab * self.hidden

    # -- KV cache ----------------------------------------------------------------------------

    def kv_elements_per_token(self, layer: int) -> int:
        """Cached values per token in ``layer``: K and V heads, or one MLA latent."""
        del layer  # every layer caches the same width; kept for per-layer models
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_dim
        return 2 * self.kv_heads * self.head_dim

    def cached_tokens(self, layer: int, context: int) -> int:
        """Tokens ``layer`` must keep: the whole context, or only the sliding window."""
        return min(context, self.sliding_window) if self.is_sliding(layer) else context

    def with_context(self, context: int) -> Architecture:
        return replace(self, context=context)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "family": self.family, "layers": self.layers,
            "hidden": self.hidden, "heads": self.heads, "kv_heads": self.kv_heads,
            "head_dim": self.head_dim, "ffn": self.ffn, "vocab": self.vocab,
            "context": self.context, "experts": self.experts,
            "active_experts": self.active_experts, "shared_experts": self.shared_experts,
            "expert_ffn": self.expert_ffn, "sliding_window": self.sliding_window,
            "sliding_layers": sum(self.is_sliding(i) for i in range(self.layers)),
            "kv_lora_rank": self.kv_lora_rank, "params": self.params,
            "active_params": self.active_params,
        }


_INT_FIELDS = ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "context",
               "experts", "active_experts", "shared_experts", "expert_ffn", "dense_layers",
               "sliding_window", "swa_pattern", "kv_lora_rank", "q_lora_rank", "qk_rope_dim",
               "qk_nope_dim", "v_head_dim")


def _architecture(name: str, raw: dict[str, Any]) -> Architecture:
    ints = {k: int(raw[k]) for k in _INT_FIELDS if k in raw}
    return Architecture(
        name=name, family=raw.get("family", "llama"), tied=bool(raw.get("tied", False)),
        qkv_bias=bool(raw.get("qkv_bias", False)), native_quant=raw.get("native_quant"),
        aliases=tuple(raw.get("aliases", ())),
        params_published=raw["params_b"] * 1e9 if "params_b" in raw else None,
        active_params_published=(raw["active_params_b"] * 1e9
                                 if "active_params_b" in raw else None),
        source=raw.get("source", ""), sources=dict(raw.get("sources", {})), **ints,
    )


def raw_models() -> dict[str, Any]:
    text = resources.files("deskai.planner").joinpath("models.toml").read_text("utf-8")
    return tomllib.loads(text)


@cache
def catalog_models() -> dict[str, Architecture]:
    """The built-in architectures by canonical name."""
    return {name: _architecture(name, raw) for name, raw in raw_models()["models"].items()}


def known_model_names() -> list[str]:
    models = catalog_models()
    return list(models) + [alias for arch in models.values() for alias in arch.aliases]


def find_catalog_model(name: str) -> Architecture | None:
    wanted = name.strip().lower()
    for arch in catalog_models().values():
        if wanted == arch.name or wanted in arch.aliases:
            return arch
    return None


def catalog_model(name: str) -> Architecture:
    """A catalog architecture, or ``UnknownArchitectureError`` naming the closest ones."""
    found = find_catalog_model(name)
    if found is None:
        raise UnknownArchitectureError(unknown_model_message(name))
    return found


def unknown_model_message(name: str) -> str:
    close = difflib.get_close_matches(name.strip().lower(), known_model_names(), n=3,
                                      cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return (f"unknown model {name!r}{hint} (a catalog name, a store name, a .gguf file or a "
            "config.json; see `deskai fit --list`)")
