"""Loading a causal language model behind one small protocol.

:class:`CausalLM` is what evaluation and training see; :func:`load_model` turns what a user
typed (nothing, ``smollm2-135m``, a model directory, a ``.gguf`` file, a Hub name) into one.
"""

from crossent.models.huggingface import DEFAULT_MODEL, HFCausalLM, load_model
from crossent.models.protocol import CausalLM, Tokenizer

__all__ = ["DEFAULT_MODEL", "CausalLM", "HFCausalLM", "Tokenizer", "load_model"]
