"""memos-desktop: a local-first personal assistant with a real memory (MemOS on one machine).

Importing the package tells OpenMP (llama.cpp's thread pool, read once when llama.cpp first
loads, wherever that happens: chat runtime or embedder) to sleep rather than spin while it waits:
on a shared 2-core machine spinning workers doubled prefill time and made embedding 5x slower.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
