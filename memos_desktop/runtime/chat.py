"""Chat generation over a loaded backend with the prompt prefix served from activation memory.

Owns the one call the assistant and `memos-desktop chat` make: render the messages with the
model's chat template, let `ActivationMemory` restore or compute (and save) the KV state of the
leading messages (system prompt + pinned memories), then stream the answer. It never decides what
goes into the prompt; the caller (assistant, scheduler) does.
"""

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from memos_desktop.runtime.activation import ActivationMemory, PreparedPrefix
from memos_desktop.runtime.base import LLMBackend, Sampling, check_fits, common_prefix, stream_text


@dataclass
class ChatTurn:
    """The streamed answer of one turn, and what activation memory did for its prefix."""

    pieces: Iterator[str]
    prompt_tokens: int
    prefix_tokens: int
    prepared: PreparedPrefix | None
    tokens: list[int] = field(default_factory=list)

    def __iter__(self) -> Iterator[str]:
        return self.pieces


def chat(
    backend: LLMBackend,
    messages: Sequence[dict],
    *,
    prefix_messages: int = 0,
    memory: ActivationMemory | None = None,
    sources: Sequence[str] = (),
    sampling: Sampling | None = None,
    stop: Sequence[str] = (),
    cancel: threading.Event | None = None,
) -> ChatTurn:
    """Answer `messages`; the first `prefix_messages` of them form the cacheable prefix.

    `sources` are the plaintext cube ids the prefix was built from (so editing one invalidates
    the saved state). Iterate the returned turn for the answer's text pieces; `turn.tokens`
    fills with the generated token ids.
    """
    sampling = sampling or Sampling()
    full = backend.tokenize(backend.chat_prompt(messages))
    check_fits(len(full), backend.n_ctx)
    prefix_len = 0
    prepared = None
    if memory is not None and prefix_messages > 0:
        prefix = backend.tokenize(backend.chat_prompt(messages[:prefix_messages], add_generation_prompt=False))
        prefix_len = common_prefix(prefix, full)
        prepared = memory.prepare(backend, full[:prefix_len], sources, cancel)
    turn = ChatTurn(iter(()), len(full), prefix_len, prepared)
    turn.pieces = stream_text(
        backend.generate_tokens(full, sampling, cancel), backend.detokenize, stop, cancel, turn.tokens.append
    )
    return turn
