"""Architectures from files: a GGUF header, a Hugging Face ``config.json``, or a store name.

Only the GGUF header is read (the store's ``gguf_header``: tensor data is never touched,
tokenizer tables are stepped over), so a 100 GB file answers as fast as a small one.
The tensors' exact byte sizes come along, so a fit for that file uses the bytes on disk rather
than an average bits-per-weight.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskai.errors import DeskaiError, InvalidModelFileError, UnknownArchitectureError
from deskai.planner.architectures import (
    Architecture,
    find_catalog_model,
    unknown_model_message,
)
from deskai.store import GGUFHeader, Store, read_gguf_header, resolve_model_path

#: Families whose GGUF does not record the sliding-window layer pattern; llama.cpp hardcodes
#: these (src/llama-model.cpp: gemma3 every 6th layer global, gemma2 / gpt-oss alternate).
SWA_PATTERN_BY_FAMILY: dict[str, int] = {"gemma3": 6, "gemma2": 2, "gpt-oss": 2,
                                         "gemma3n": 5, "cohere2": 4}

#: GGML tensor types llama.cpp's CPU backend repacks into an interleaved copy (CPU_REPACK).
CPU_REPACKED_TYPES = frozenset({"Q4_0", "Q4_K", "IQ4_NL"})


@dataclass(frozen=True, slots=True)
class ModelFile:
    """A GGUF file's architecture plus what its tensors weigh on disk, by GGML type."""

    architecture: Architecture
    path: Path
    bytes_by_type: dict[str, int]
    embedding_bytes: int  # token_embd.weight (read one row per token)
    file_type: str | None = None  # general.file_type as llama.cpp names it, e.g. "q4_k_m"

    @property
    def weight_bytes(self) -> int:
        return sum(self.bytes_by_type.values())

    @property
    def cpu_repacked_bytes(self) -> int:
        return sum(n for t, n in self.bytes_by_type.items() if t in CPU_REPACKED_TYPES)

    @property
    def quantization(self) -> str:
        """The file's declared type (``q4_k_m``), else the type holding most bytes."""
        if self.file_type:
            return self.file_type
        return max(self.bytes_by_type, key=self.bytes_by_type.__getitem__).lower()


def read_gguf(path: str | os.PathLike[str]) -> ModelFile:
    """The architecture in a GGUF header; ``InvalidModelFileError`` if it is not GGUF."""
    file_path = Path(path)
    header = read_gguf_header(file_path)
    bytes_by_type: dict[str, int] = {}
    for tensor in header.tensors:
        bytes_by_type[tensor.type_name] = bytes_by_type.get(tensor.type_name, 0) + tensor.n_bytes
    embedding = next((t.n_bytes for t in header.tensors if t.name == "token_embd.weight"), 0)
    tied = not any(t.name == "output.weight" for t in header.tensors)
    arch = architecture_from_gguf_fields(header.fields, vocab=_vocab_size(header), tied=tied,
                                         name=file_path.name)
    return ModelFile(arch, file_path, bytes_by_type, embedding,
                     _file_type_name(header.fields.get("general.file_type")))


def _file_type_name(value: Any) -> str | None:
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(value)).name.removeprefix("MOSTLY_").lower()
    except (TypeError, ValueError):
        return None


def _vocab_size(header: GGUFHeader) -> int:
    fields = header.fields
    arch = fields.get("general.architecture")
    if f"{arch}.vocab_size" in fields:
        return int(fields[f"{arch}.vocab_size"])
    if "tokenizer.ggml.tokens" in header.arrays:
        return header.arrays["tokenizer.ggml.tokens"].length
    for tensor in header.tensors:
        if tensor.name == "token_embd.weight" and tensor.dims:
            return tensor.dims[-1]
    return 0


def _per_layer(value: Any) -> int:
    """GGUF stores some hyperparameters per layer (a list); the planner takes the largest."""
    if isinstance(value, list):
        return int(max(value)) if value else 0
    return int(value or 0)


def architecture_from_gguf_fields(fields: dict[str, Any], *, vocab: int, tied: bool,
                                  name: str) -> Architecture:
    """Map llama.cpp's ``{arch}.*`` metadata keys onto an ``Architecture``."""
    family = str(fields.get("general.architecture") or "")
    if not family:
        raise InvalidModelFileError(f"{name}: GGUF header has no general.architecture")

    def get(key: str, default: Any = 0) -> Any:
        value = fields.get(f"{family}.{key}")
        return default if value is None else value

    hidden = int(get("embedding_length"))
    heads = _per_layer(get("attention.head_count"))
    if not hidden or not heads:
        raise UnknownArchitectureError(
            f"{name}: GGUF architecture {family!r} has no attention heads the planner can use")
    head_dim = int(get("attention.key_length", 0)) or hidden // heads
    kv_heads = _per_layer(get("attention.head_count_kv", heads)) or heads
    window = int(get("attention.sliding_window", 0))
    pattern = int(get("attention.sliding_window_pattern", 0) or 0) or SWA_PATTERN_BY_FAMILY.get(
        family, 0)
    return Architecture(
        name=str(fields.get("general.name") or name), family=family,
        layers=int(get("block_count")), hidden=hidden, heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, ffn=_per_layer(get("feed_forward_length")), vocab=vocab,
        context=int(get("context_length", 4096)), tied=tied,
        experts=int(get("expert_count", 0)), active_experts=int(get("expert_used_count", 0)),
        shared_experts=int(get("expert_shared_count", 0)),
        expert_ffn=int(get("expert_feed_forward_length", 0)),
        dense_layers=int(get("leading_dense_block_count", 0)),
        sliding_window=window if pattern else 0, swa_pattern=pattern if window else 0,
        kv_lora_rank=int(get("attention.kv_lora_rank", 0)),
        q_lora_rank=int(get("attention.q_lora_rank", 0)),
        qk_rope_dim=int(get("rope.dimension_count", 0)) if get("attention.kv_lora_rank", 0)
        else 0,
        qk_nope_dim=(head_dim - int(get("rope.dimension_count", 0))
                     if get("attention.kv_lora_rank", 0) else 0),
        v_head_dim=int(get("attention.value_length", 0)) if get("attention.kv_lora_rank", 0)
        else 0,
        source=f"GGUF header of {name}",
    )


def read_hf_config(path: str | os.PathLike[str]) -> Architecture:
    """The architecture in a Hugging Face ``config.json`` (a file or the directory holding it)."""
    file_path = Path(path)
    if file_path.is_dir():
        file_path = file_path / "config.json"
    try:
        config = json.loads(file_path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidModelFileError(f"{file_path}: not a readable config.json ({exc})") from exc
    if not isinstance(config, dict):
        raise InvalidModelFileError(f"{file_path}: config.json is not a JSON object")
    return architecture_from_hf_config(config, name=file_path.parent.name or "config")


#: The hyperparameters every config must give, under each name a family uses: transformers'
#: Llama-style names first; then GPT-2 / GPT-J / BLOOM / Falcon (RW) names, MPT's, Megatron's.
_HF_REQUIRED: dict[str, tuple[str, ...]] = {
    "hidden": ("hidden_size", "n_embd", "n_embed"),
    "heads": ("num_attention_heads", "n_head", "n_heads"),
    "layers": ("num_hidden_layers", "n_layer", "n_layers", "num_layers"),
    "vocab": ("vocab_size", "padded_vocab_size"),
}
#: MPT names its width ``d_model``; so do encoder-decoders (T5, BART, Whisper) and DBRX's
#: mixture of experts, which would be misread as dense decoders, so only MPT's is taken.
_MPT_HIDDEN = "d_model"

#: Families whose FFN is two matrices (up, activation, down), not gated (gate, up, down): the
#: MLP classes of transformers' modeling files (GPT2MLP, GPTJMLP, GPTNeoXMLP, FalconMLP,
#: MptMLP, BloomMLP, OPT's fc1/fc2, GPTBigCodeMLP, PhiMLP, Starcoder2MLP, NemotronMLP...).
_UNGATED_FAMILIES = frozenset({
    "gpt2", "gpt_neo", "gptj", "gpt_neox", "codegen", "gpt_bigcode", "falcon", "RefinedWeb",
    "RefinedWebModel", "mpt", "bloom", "opt", "phi", "starcoder2", "nemotron"})
#: Families whose config class keeps PretrainedConfig's default ``tie_word_embeddings=True``,
#: so their config.json may leave the key out (checked against transformers 5.24's classes);
#: Llama-style classes default to untied.
_TIED_BY_DEFAULT = frozenset({
    "gpt2", "gpt_neo", "gpt_bigcode", "falcon", "RefinedWeb", "RefinedWebModel", "mpt", "bloom",
    "opt", "starcoder2", "gemma", "gemma2", "gemma3", "gemma3_text"})
#: Keys only Megatron-LM / NeMo exports have (they carry no ``model_type``).
_MEGATRON_KEYS = ("num_layers", "ffn_hidden_size", "num_query_groups", "kv_channels",
                  "encoder_seq_length", "seq_length")
#: NeMo's gated activations (``activation``); its others (gelu, squared-relu) are two matrices.
_NEMO_GATED = frozenset({"swiglu", "geglu", "reglu"})

#: A multimodal config's ``text_config`` lists only what differs from its class's defaults
#: (transformers' save_pretrained diffs nested configs): Gemma 3 4B's omits its heads, KV heads,
#: head_dim and vocabulary; Llava 1.5's all but the vocabulary. The defaults of the classes
#: such configs nest, from transformers' configuration_*.py (checked against 5.24).
_TEXT_CONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
              "num_hidden_layers": 32, "num_attention_heads": 32,
              "max_position_embeddings": 2048, "tie_word_embeddings": False},
    "mistral": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
                "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                "max_position_embeddings": 131072, "tie_word_embeddings": False},
    "gemma2": {"vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216,
               "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
               "head_dim": 256, "max_position_embeddings": 8192, "sliding_window": 4096,
               "sliding_window_pattern": 2, "tie_word_embeddings": True},
    "gemma3_text": {"vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216,
                    "num_hidden_layers": 26, "num_attention_heads": 8,
                    "num_key_value_heads": 4, "head_dim": 256,
                    "max_position_embeddings": 131072, "sliding_window": 4096,
                    "sliding_window_pattern": 6, "tie_word_embeddings": True},
}


@dataclass(frozen=True, slots=True)
class UngatedFFNArchitecture(Architecture):
    """An architecture whose dense FFN is two matrices (GPT-2, GPT-J, NeoX, Falcon, MPT, BLOOM,
    OPT...). ``Architecture`` counts three (gated) and has no field saying otherwise."""

    def ffn_params(self, layer: int, *, active: bool = False) -> int:
        if self.is_moe_layer(layer):
            return Architecture.ffn_params(self, layer, active=active)
        return 2 * self.hidden * self.ffn


def _first(config: dict[str, Any], *keys: str) -> Any:
    """The first of ``keys`` the config sets (not null), else None."""
    return next((config[k] for k in keys if config.get(k) is not None), None)


def _hf_names(field: str, family: str) -> tuple[str, ...]:
    names = _HF_REQUIRED[field]
    return (*names, _MPT_HIDDEN) if field == "hidden" and family == "mpt" else names


def _hf_required(config: dict[str, Any], name: str) -> dict[str, int]:
    """The required hyperparameters as positive ints; a one-line error names any missing."""
    family = str(config.get("model_type", ""))
    names = {field: _hf_names(field, family) for field in _HF_REQUIRED}
    found = {field: _first(config, *keys) for field, keys in names.items()}
    missing = [_hf_key_names(names[field]) for field, value in found.items() if value is None]
    if missing:
        raise UnknownArchitectureError(
            f"{name}: config.json has no {', '.join(missing)}, which the planner needs")
    return {field: _positive_int(value, _hf_key_names(names[field]), name)
            for field, value in found.items()}


def _hf_key_names(names: tuple[str, ...]) -> str:
    """``hidden_size (or n_embd, n_embed)``: a field's keys as an error message names them."""
    first, *others = names
    return f"{first} (or {', '.join(others)})" if others else first


def _positive_int(value: Any, key: str, name: str) -> int:
    """``value`` as a positive int; a hand-edited "768", 0 or true is refused by key."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 \
            and float(value).is_integer():
        return int(value)
    raise InvalidModelFileError(
        f"{name}: config.json's {key} must be a positive integer, got {value!r}")


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's keys: a multimodal ``text_config`` over its class's defaults."""
    text = config.get("text_config")
    if not isinstance(text, dict) or not text:
        return config
    return {**_TEXT_CONFIG_DEFAULTS.get(str(text.get("model_type", "")), {}), **text}


def _nested(config: dict[str, Any], key: str) -> dict[str, Any]:
    """A nested table such as MPT's ``attn_config``, or an empty one."""
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def _is_megatron(config: dict[str, Any]) -> bool:
    return not config.get("model_type") and any(k in config for k in _MEGATRON_KEYS)


def _hf_kv_heads(config: dict[str, Any], heads: int) -> int:
    """KV heads under every family's names: GQA, Falcon's and StarCoder's multi-query, MPT's
    ``attn_config``, Megatron's query groups."""
    # Falcon: multi_query means one KV head unless the new decoder architecture (40B, 180B)
    # gives num_kv_heads (transformers' FalconAttention); GPTBigCode's multi_query is one.
    if config.get("multi_query") and not config.get("new_decoder_architecture"):
        return 1
    if config.get("group_query_attention") is False:  # Megatron-LM ignores num_query_groups
        return heads
    attn = _nested(config, "attn_config")
    mpt_type = attn.get("attn_type")
    if mpt_type == "multiquery_attention":
        return 1
    mpt_kv = attn.get("kv_n_heads") if mpt_type == "grouped_query_attention" else None
    return int(_first(config, "num_key_value_heads", "num_kv_heads", "n_head_kv",
                      "num_query_groups") or mpt_kv or heads)


def _hf_ffn(config: dict[str, Any], hidden: int) -> int:
    """The FFN width: given outright (Llama, GPT-2/J, OPT, Falcon, Megatron, MPT's ffn_config),
    as MPT's ``expansion_ratio`` x width, else GPT-2's default of 4 x width."""
    explicit = _first(config, "intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size") \
        or _nested(config, "ffn_config").get("ffn_hidden_size")
    if explicit:
        return int(explicit)
    return int(float(config.get("expansion_ratio") or 4) * hidden)


def _hf_gated(config: dict[str, Any]) -> bool:
    """Whether the FFN is gated (three matrices): by family, or by a Megatron/NeMo export's
    ``swiglu`` / ``gated_linear_unit`` / ``activation`` (Megatron's default GELU is not)."""
    if _is_megatron(config):
        activation = str(config.get("activation") or "").removeprefix("fast-")
        return bool(config.get("gated_linear_unit") or config.get("swiglu")
                    or activation in _NEMO_GATED)
    if _nested(config, "ffn_config").get("ffn_type") == "mptglu":  # llm-foundry's gated MPT
        return True
    return str(config.get("model_type", "")) not in _UNGATED_FAMILIES


def _hf_tied(config: dict[str, Any]) -> bool:
    """Whether the LM head is the embedding: the config's key (NeMo's and Megatron-LM's too),
    else the family's default."""
    if config.get("tie_word_embeddings") is not None:
        return bool(config["tie_word_embeddings"])
    if config.get("share_embeddings_and_output_weights") is not None:  # NeMo
        return bool(config["share_embeddings_and_output_weights"])
    if config.get("untie_embeddings_and_output_weights") is not None:  # Megatron-LM
        return not config["untie_embeddings_and_output_weights"]
    return _is_megatron(config) or str(config.get("model_type", "")) in _TIED_BY_DEFAULT


def architecture_from_hf_config(config: dict[str, Any], *, name: str) -> Architecture:
    """Map a config's keys onto an ``Architecture``: transformers' families (Llama, Qwen, Gemma,
    Mistral, DeepSeek, gpt-oss, GPT-2, GPT-J, GPT-NeoX, Falcon, MPT, BLOOM, OPT...), Megatron /
    NeMo exports, and the ``text_config`` of multimodal ones (Gemma 3, Llava).

    A config without the shapes the planner needs raises ``UnknownArchitectureError`` naming
    the missing keys.
    """
    text = _text_config(config)
    required = _hf_required(text, name)
    hidden, heads = required["hidden"], required["heads"]
    head_dim = int(_first(text, "head_dim", "kv_channels") or hidden // heads)
    window = int(text.get("sliding_window") or 0)
    pattern = _hf_swa_pattern(text)
    experts = int(text.get("num_local_experts") or text.get("n_routed_experts")
                  or text.get("num_experts") or 0)
    model_type = str(text.get("model_type", ""))
    kind = Architecture if _hf_gated(text) else UngatedFFNArchitecture
    return kind(
        name=str(text.get("_name_or_path") or name), family=model_type,
        layers=required["layers"], hidden=hidden, heads=heads,
        kv_heads=_hf_kv_heads(text, heads), head_dim=head_dim, ffn=_hf_ffn(text, hidden),
        vocab=required["vocab"],
        context=int(_first(text, "max_position_embeddings", "n_positions", "max_seq_len",
                           "seq_length", "encoder_seq_length", "n_ctx") or 4096),
        tied=_hf_tied(text),
        qkv_bias=bool(text.get("attention_bias", False)),
        experts=experts,
        active_experts=int(text.get("num_experts_per_tok") or text.get("experts_per_token")
                           or 0) if experts else 0,
        shared_experts=int(text.get("n_shared_experts") or 0),
        expert_ffn=int(text.get("moe_intermediate_size") or text.get("intermediate_size") or 0)
        if experts else 0,
        dense_layers=int(text.get("first_k_dense_replace") or 0),
        sliding_window=window if pattern else 0, swa_pattern=pattern if window else 0,
        kv_lora_rank=int(text.get("kv_lora_rank") or 0),
        q_lora_rank=int(text.get("q_lora_rank") or 0),
        qk_rope_dim=int(text.get("qk_rope_head_dim") or 0),
        qk_nope_dim=int(text.get("qk_nope_head_dim") or 0),
        v_head_dim=int(text.get("v_head_dim") or 0),
        source=f"config.json of {name}",
    )


def _hf_swa_pattern(config: dict[str, Any]) -> int:
    """Every how-many layers one is global: from ``layer_types`` or ``sliding_window_pattern``."""
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and "full_attention" in layer_types:
        first_full = layer_types.index("full_attention")
        return first_full + 1 if any(t != "full_attention" for t in layer_types) else 0
    if config.get("sliding_window_pattern"):
        return int(config["sliding_window_pattern"])
    if config.get("use_sliding_window") is False:
        return 0
    # Mistral-style configs with sliding_window on every layer: a pattern of "never global"
    # would need its own flag; llama.cpp treats them as full attention, and so do we.
    return 0


def load_model(name: str) -> Architecture | ModelFile:
    """Resolve what the user typed: a .gguf file, a config.json, a catalog name, a store name."""
    path = Path(name).expanduser()
    if path.suffix == ".gguf" or (path.is_file() and _is_gguf(path)):
        if not path.is_file():
            raise UnknownArchitectureError(f"no such GGUF file: {name}")
        return read_gguf(path)
    if path.name == "config.json" or (path.is_dir() and (path / "config.json").is_file()):
        return read_hf_config(path)
    found = find_catalog_model(name)
    if found is not None:
        return found
    stored = _store_path(name)
    if stored is not None:
        return read_gguf(stored)
    raise UnknownArchitectureError(unknown_model_message(name))


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"GGUF"


def _store_path(name: str) -> Path | None:
    """The store's GGUF for ``name``, or None: the planner works without a store or engine."""
    try:
        return resolve_model_path(Store(), name)
    except (DeskaiError, OSError):
        return None
