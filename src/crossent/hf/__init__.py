"""The door into transformers: a Hugging Face causal LM trained through crossent's fused loss.

:func:`patch` makes ``model(input_ids, labels=...)`` compute transformers' loss with
:func:`crossent.linear_cross_entropy`, so no ``[tokens, V]`` logits exist during training;
:func:`unpatch` undoes it. :mod:`crossent.hf.transform` reads and verifies what an architecture
does to its logits (Gemma's soft-cap, Cohere's and Granite's scales).
"""

from __future__ import annotations

from crossent.hf.patch import is_patched, patch, unpatch

__all__ = ["is_patched", "patch", "unpatch"]
