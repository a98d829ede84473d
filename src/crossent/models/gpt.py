"""A GPT-2-style decoder: the model ``crossent train`` trains, readable top to bottom.

The architecture is GPT-2's exactly, so transformers' ``GPT2LMHeadModel`` computes the same
logits from the same weights (:func:`to_gpt2_state_dict` and :func:`from_gpt2_state_dict`
convert between the two):

* token embedding plus a learned position embedding;
* ``n_layer`` pre-norm blocks, each ``x + attention(norm(x))`` then ``x + mlp(norm(x))``, with
  LayerNorms that have a bias, causal self-attention through
  :func:`torch.nn.functional.scaled_dot_product_attention` and a 4x MLP with the tanh
  approximation of GELU (GPT-2's ``gelu_new``);
* a final LayerNorm; the LM head is the token embedding itself (weight tying, no bias).

:meth:`GPT.forward` stops at the final norm and returns hidden states, never logits: losses go
through :func:`crossent.linear_cross_entropy` with :attr:`GPT.head_weight`, so a ``[B, T, V]``
logits tensor is never held. Shapes: ``B`` batch, ``T`` tokens, ``d`` model width, ``H`` heads,
``V`` vocabulary.

>>> model = GPT(GPTConfig.preset("tiny", vocab_size=100))
>>> hidden = model(torch.randint(0, 100, (2, 16)))  # (B, T) -> (B, T, d)
>>> tuple(hidden.shape), tuple(model.head_weight.shape)
((2, 16, 64), (100, 64))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GPT", "GPTConfig", "from_gpt2_state_dict", "to_gpt2_state_dict"]

# GPT-2's vocabulary; a preset keeps it until a trained tokenizer says otherwise.
GPT2_VOCAB_SIZE = 50257
# The standard deviation of GPT-2's initial weights.
_INIT_STD = 0.02


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a :class:`GPT`.

    Attributes:
        vocab_size: ``V``, rows of the token embedding (and of the tied LM head).
        context_length: the most tokens one input row may have (rows of the position embedding).
        n_layer: transformer blocks.
        n_head: attention heads per block; must divide ``d_model``.
        d_model: ``d``, the width of the residual stream.
        dropout: the probability of dropout on embeddings, attention weights and residual
            branches while training, in ``[0, 1)``.

    Raises:
        ValueError: a size is not a positive integer, ``n_head`` does not divide ``d_model``,
            or ``dropout`` is outside ``[0, 1)``.
    """

    vocab_size: int = GPT2_VOCAB_SIZE
    context_length: int = 1024
    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    dropout: float = 0.0

    # Architectures by name; vocab_size is GPT-2's until overridden by a trained tokenizer.
    PRESETS: ClassVar[Mapping[str, Mapping[str, int]]] = {
        # For tests: builds and runs in milliseconds.
        "tiny": {"context_length": 128, "n_layer": 2, "n_head": 4, "d_model": 64},
        # The default of `crossent train` on a CPU: 4.3M parameters at V = 4096. On 2 cores a
        # training step (AdamW, loss through linear_cross_entropy) ran at up to 1,500 tokens/s,
        # and 360k tokens of the Python docs (4 minutes at that speed) gave 2.0 bits per byte.
        "cpu-small": {"context_length": 256, "n_layer": 4, "n_head": 4, "d_model": 256},
        # GPT-2 small (124M parameters) and medium (355M).
        "gpt2": {"context_length": 1024, "n_layer": 12, "n_head": 12, "d_model": 768},
        "gpt2-medium": {"context_length": 1024, "n_layer": 24, "n_head": 16, "d_model": 1024},
    }

    def __post_init__(self) -> None:
        for field in ("vocab_size", "context_length", "n_layer", "n_head", "d_model"):
            value = getattr(self, field)
            # bool is an int subclass, but True layers is a mistake, not a size.
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head:
            raise ValueError(
                f"d_model {self.d_model} is not divisible by n_head {self.n_head}: "
                "every head needs the same width"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """The named architecture of :attr:`PRESETS`, with some fields replaced.

        Args:
            name: ``"tiny"``, ``"cpu-small"``, ``"gpt2"`` or ``"gpt2-medium"``.
            **overrides: fields to change, typically ``vocab_size`` to match a tokenizer.

        Raises:
            ValueError: an unknown preset or field, or an invalid resulting config.

        >>> GPTConfig.preset("gpt2-medium", vocab_size=4096).n_layer
        24
        """
        if name not in cls.PRESETS:
            raise ValueError(f"unknown GPT preset {name!r}; choose one of {', '.join(cls.PRESETS)}")
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"unknown GPTConfig field(s) {', '.join(unknown)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict; ``GPTConfig(**config.to_dict()) == config``."""
        return dataclasses.asdict(self)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position sees itself and the positions before it."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.attention_dropout = config.dropout  # applied inside the SDPA kernel
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.residual_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, width = x.shape
        head_width = width // self.n_head
        q, k, v = self.qkv(x).split(width, dim=-1)  # 3 x (B, T, d)
        q, k, v = (
            t.view(batch, tokens, self.n_head, head_width).transpose(1, 2)  # (B, H, T, d/H)
            for t in (q, k, v)
        )
        attended = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attention_dropout if self.training else 0.0, is_causal=True
        )  # (B, H, T, d/H)
        attended = attended.transpose(1, 2).reshape(batch, tokens, width)  # (B, T, d)
        out: Tensor = self.residual_dropout(self.proj(attended))
        return out


class MLP(nn.Module):
    """The position-wise feed-forward network: d -> 4d -> GELU (tanh) -> d."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, 4 * config.d_model)
        self.down = nn.Linear(4 * config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        hidden = F.gelu(self.up(x), approximate="tanh")  # (B, T, 4d)
        out: Tensor = self.dropout(self.down(hidden))  # (B, T, d)
        return out


class Block(nn.Module):
    """One pre-norm transformer block: attention, then the MLP, each added to the residual."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.d_model)
        self.attention = CausalSelfAttention(config)
        self.mlp_norm = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.attention_norm(x))
        x = x + self.mlp(self.mlp_norm(x))
        return x


class GPT(nn.Module):
    """A GPT-2-style decoder that returns its final hidden states; the head is the embedding.

    Weights start as GPT-2's did: normal with standard deviation 0.02, biases zero, and the two
    projections that write into the residual stream (attention output and MLP down) scaled by
    ``1 / sqrt(2 * n_layer)``, since each block adds two of them to the same stream.

    Args:
        config: The sizes.

    Example:
        >>> import crossent
        >>> model = GPT(GPTConfig.preset("tiny", vocab_size=100))
        >>> idx = torch.randint(0, 100, (2, 17))
        >>> hidden = model(idx[:, :-1])  # (B, T, d)
        >>> loss = crossent.linear_cross_entropy(hidden, model.head_weight, idx[:, 1:])
        >>> abs(loss.item() - math.log(100)) < 0.5  # an untrained model guesses uniformly
        True
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.context_length, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.final_norm = nn.LayerNorm(config.d_model)
        self.apply(self._init_weights)
        residual_std = _INIT_STD / math.sqrt(2 * config.n_layer)
        for name, parameter in self.named_parameters():
            if name.endswith(("attention.proj.weight", "mlp.down.weight")):
                nn.init.normal_(parameter, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=_INIT_STD)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        # nn.LayerNorm starts as ones and zeros already.

    @property
    def head_weight(self) -> Tensor:
        """The LM head, ``[V, d]``: the token embedding's own Parameter (tied, no bias)."""
        return self.token_embedding.weight

    def forward(self, idx: Tensor) -> Tensor:
        """The hidden states after the final norm: ``[B, T]`` int64 -> ``[B, T, d]``.

        Logits are ``hidden @ head_weight.T``; the loss of next-token targets is
        ``crossent.linear_cross_entropy(hidden, model.head_weight, targets)``.

        Raises:
            ValueError: ``idx`` is not ``[B, T]`` or ``T`` exceeds the context length.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be [batch, tokens], got shape {tuple(idx.shape)}")
        tokens = idx.shape[1]
        if tokens > self.config.context_length:
            raise ValueError(
                f"{tokens} tokens exceed the context length ({self.config.context_length})"
            )
        positions = torch.arange(tokens, device=idx.device)  # (T,)
        x = self.token_embedding(idx) + self.position_embedding(positions)  # (B, T, d)
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x)
        hidden: Tensor = self.final_norm(x)  # (B, T, d)
        return hidden

    def num_parameters(self, non_embedding: bool = False) -> int:
        """The number of parameters, the tied head counted once.

        Args:
            non_embedding: leave out the token and position embeddings, as scaling laws count
                (Kaplan et al., 2020); the tied head goes with the token embedding.
        """
        total = sum(parameter.numel() for parameter in self.parameters())
        if non_embedding:
            total -= self.token_embedding.weight.numel() + self.position_embedding.weight.numel()
        return total


# Our parameter names -> transformers' GPT2LMHeadModel's, for block parameters ("{}" = layer).
_GPT2_BLOCK_NAMES = {
    "attention_norm": "ln_1",
    "attention.qkv": "attn.c_attn",
    "attention.proj": "attn.c_proj",
    "mlp_norm": "ln_2",
    "mlp.up": "mlp.c_fc",
    "mlp.down": "mlp.c_proj",
}
_GPT2_TOP_NAMES = {
    "token_embedding": "transformer.wte",
    "position_embedding": "transformer.wpe",
    "final_norm": "transformer.ln_f",
}
# GPT-2 stores these linear layers as Conv1D, whose weight is [in, out]: nn.Linear's transposed.
_GPT2_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _gpt2_name(name: str) -> str:
    module, _, kind = name.rpartition(".")  # kind: weight or bias
    if module.startswith("blocks."):
        _, layer, inner = module.split(".", 2)
        return f"transformer.h.{layer}.{_GPT2_BLOCK_NAMES[inner]}.{kind}"
    return f"{_GPT2_TOP_NAMES[module]}.{kind}"


def to_gpt2_state_dict(model: GPT) -> dict[str, Tensor]:
    """The weights of ``model`` named and laid out as transformers' ``GPT2LMHeadModel``'s.

    ``lm_head.weight`` is included as the token embedding itself. Load the result into a
    ``GPT2LMHeadModel`` of a ``GPT2Config`` with the same sizes (``n_embd = d_model``,
    ``n_positions = context_length``) and GPT-2's defaults otherwise, and its logits are
    ``model(idx) @ model.head_weight.T``.

    >>> sorted(to_gpt2_state_dict(GPT(GPTConfig.preset("tiny", vocab_size=10))))[:2]
    ['lm_head.weight', 'transformer.h.0.attn.c_attn.bias']
    """
    state = {}
    for name, tensor in model.state_dict().items():
        gpt2_name = _gpt2_name(name)
        state[gpt2_name] = tensor.T if gpt2_name.endswith(_GPT2_CONV1D) else tensor
    state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


def from_gpt2_state_dict(
    state_dict: Mapping[str, Tensor], *, n_head: int, dropout: float = 0.0
) -> GPT:
    """A :class:`GPT` holding the weights of a transformers ``GPT2LMHeadModel`` state dict.

    The sizes are read from the weights; the number of heads is not in them, so it is given.
    The model must be plain GPT-2 (``activation_function="gelu_new"``, LayerNorm epsilon 1e-5,
    tied head): other ``GPT2Config`` variants load but compute something else.

    Args:
        state_dict: ``GPT2LMHeadModel(...).state_dict()`` (a ``GPT2Model``'s, without the
            ``transformer.`` prefix, is accepted too); the attention-mask buffers of older
            transformers versions are ignored.
        n_head: ``config.n_head`` of the GPT-2 model.
        dropout: the dropout of the new model.

    Raises:
        ValueError: a weight is missing, unexpected or of the wrong shape, or the LM head is not
            tied to the token embedding.

    >>> model = GPT(GPTConfig.preset("tiny", vocab_size=10))
    >>> again = from_gpt2_state_dict(to_gpt2_state_dict(model), n_head=4)
    >>> torch.equal(again.head_weight, model.head_weight)
    True
    """
    state = {
        name if name.startswith(("transformer.", "lm_head.")) else f"transformer.{name}": tensor
        for name, tensor in state_dict.items()
        if not name.endswith((".attn.bias", ".attn.masked_bias"))
    }
    head = state.pop("lm_head.weight", None)
    if "transformer.wte.weight" not in state or "transformer.wpe.weight" not in state:
        raise ValueError("not a GPT-2 state dict: transformer.wte.weight or wpe.weight is missing")
    embedding = state["transformer.wte.weight"]
    if head is not None and not torch.equal(head, embedding):
        raise ValueError("the LM head is not tied to the token embedding, as crossent's GPT needs")
    layers = {name.split(".")[2] for name in state if name.startswith("transformer.h.")}
    config = GPTConfig(
        vocab_size=embedding.shape[0],
        context_length=state["transformer.wpe.weight"].shape[0],
        n_layer=len(layers),
        n_head=n_head,
        d_model=embedding.shape[1],
        dropout=dropout,
    )
    with torch.device("meta"):  # the weights come from state_dict; skip the random init
        model = GPT(config)
    ours = {}
    for name, expected in model.state_dict().items():
        gpt2_name = _gpt2_name(name)
        if gpt2_name not in state:
            raise ValueError(f"not a GPT-2 state dict: {gpt2_name} is missing")
        tensor = state.pop(gpt2_name)
        conv1d = gpt2_name.endswith(_GPT2_CONV1D)
        gpt2_shape = tuple(expected.T.shape if conv1d else expected.shape)
        if tuple(tensor.shape) != gpt2_shape:
            raise ValueError(
                f"{gpt2_name} has shape {tuple(tensor.shape)}, expected {gpt2_shape} "
                f"(d_model {config.d_model} from transformer.wte.weight)"
            )
        # A copy: the new model must not share storage with the model the weights came from.
        ours[name] = (tensor.T if conv1d else tensor).clone(memory_format=torch.contiguous_format)
    if state:
        raise ValueError(f"not a plain GPT-2 state dict: unexpected {', '.join(sorted(state))}")
    model.load_state_dict(ours, assign=True)
    return model
