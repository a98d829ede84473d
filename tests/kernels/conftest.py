"""Run Triton kernels in Triton's CPU interpreter unless told otherwise.

The variable must be set before Triton is first imported: Triton builds its own library
functions (``tl.max``, ...) for the interpreter only when it is set at import time. On a GPU
machine, ``TRITON_INTERPRET=0 pytest tests/kernels`` compiles the kernels for the device instead.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
