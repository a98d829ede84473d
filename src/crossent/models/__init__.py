"""Loading a causal language model behind one small protocol, and crossent's own GPT.

:class:`CausalLM` is what evaluation and training see; :func:`load_model` turns what a user
typed (nothing, ``smollm2-135m``, a model directory, a ``.gguf`` file, a Hub name, a crossent GPT
checkpoint) into one. :class:`GPT` is the GPT-2-style model ``crossent train`` trains,
:func:`save_gpt` and :func:`load_gpt` its checkpoint folder, :func:`train_bpe_tokenizer` its
tokenizer.

One module per idea: ``protocol`` (the interface, and the base its adapters share),
``tokenizer`` (transformers tokenizers behind it), ``huggingface`` (transformers models),
``gguf`` (GGUF files converted once and cached), ``gpt`` and ``checkpoint`` (crossent's GPT and
its folder), ``bpe`` (its tokenizer); ``loading`` is the only one that knows them all.
"""

from crossent.models.bpe import train_bpe_tokenizer
from crossent.models.checkpoint import GPTCausalLM, load_gpt, save_gpt
from crossent.models.gpt import GPT, GPTConfig, from_gpt2_state_dict, to_gpt2_state_dict
from crossent.models.huggingface import HFCausalLM
from crossent.models.loading import DEFAULT_MODEL, load_model
from crossent.models.protocol import CausalLM, Tokenizer

__all__ = [
    "DEFAULT_MODEL",
    "GPT",
    "CausalLM",
    "GPTCausalLM",
    "GPTConfig",
    "HFCausalLM",
    "Tokenizer",
    "from_gpt2_state_dict",
    "load_gpt",
    "load_model",
    "save_gpt",
    "to_gpt2_state_dict",
    "train_bpe_tokenizer",
]
