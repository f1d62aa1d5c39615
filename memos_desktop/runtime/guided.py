"""Schema-guided JSON generation over any `LLMBackend`: output that always parses.

The JSON structure (braces, keys, commas, quotes) is written by this module by walking a small
JSON schema; the model only fills value slots, each under its slot's constraint: a string slot
ends at the first quote or newline and at `maxLength`, an enum slot becomes the option the
model's text starts with, an integer slot keeps its digits clamped to the bounds, an array asks
the model whether another item follows (up to `maxItems`). Every generated value is escaped with
`json.dumps`, so even a random-weight model yields valid, schema-conforming JSON. This works
through the Protocol's tokenize / generate_tokens only, the same way on llama.cpp and MLX.
Supported schema: object (properties in order), array of one item schema, string, enum, integer.
"""

import json
import threading
from collections.abc import Sequence

from memos_desktop.errors import ModelError

SLOT_TOKENS = 48  # at most this many tokens per string slot (maxLength cuts characters further)
CHOICE_TOKENS = 4  # tokens the model gets to pick an enum option, a number, or "another item?"


class GuidedJSON:
    """Generates one JSON value for `schema` after the chat `messages`, greedily."""

    def __init__(self, llm, messages: Sequence[dict], cancel: threading.Event | None = None):
        self.llm = llm
        self.prompt = llm.chat_prompt(list(messages))
        self.cancel = cancel
        self.out = ""
        self.tokens_used = 0

    def generate(self, schema: dict, max_tokens: int) -> str:
        """The JSON text; the model may spend at most `max_tokens` tokens on the slots."""
        self.budget = max_tokens
        self._value(schema)
        return self.out

    def _continue(self, max_tokens: int, stops: str) -> str:
        """What the model writes next (≤ max_tokens, ended before any character in `stops`)."""
        from memos_desktop.runtime.base import Sampling

        n = min(max_tokens, self.budget - self.tokens_used)
        if n <= 0 or (self.cancel is not None and self.cancel.is_set()):
            return ""
        tokens = self.llm.tokenize(self.prompt + self.out)
        generated: list[int] = []
        text = ""
        for token in self.llm.generate_tokens(tokens, Sampling(max_tokens=n), self.cancel):
            generated.append(token)
            text = self.llm.detokenize(generated)
            if any(ch in text for ch in stops):
                break
        self.tokens_used += len(generated)
        cut = min((text.find(ch) for ch in stops if ch in text), default=len(text))
        return text[:cut]

    def _value(self, schema: dict) -> None:
        if "enum" in schema:
            self._enum(schema["enum"])
        elif schema.get("type") == "object":
            self._object(schema)
        elif schema.get("type") == "array":
            self._array(schema)
        elif schema.get("type") == "string":
            self._string(schema.get("maxLength", 200))
        elif schema.get("type") == "integer":
            self._integer(schema.get("minimum", 0), schema.get("maximum", 2**31))
        else:
            raise ModelError(f"Guided JSON does not support the schema {json.dumps(schema)[:80]}.")

    def _object(self, schema: dict) -> None:
        self.out += "{"
        for i, (key, sub) in enumerate(schema.get("properties", {}).items()):
            self.out += ("" if i == 0 else ", ") + json.dumps(key) + ": "
            self._value(sub)
        self.out += "}"

    def _array(self, schema: dict) -> None:
        self.out += "["
        for i in range(schema.get("maxItems", 8)):
            if not self._another(first=i == 0):
                break
            self.out += "" if i == 0 else ", "
            self._value(schema["items"])
        self.out += "]"

    def _another(self, first: bool) -> bool:
        """Whether the model starts another item: an opening brace after "[", else a comma."""
        text = self._continue(CHOICE_TOKENS, "\n").lstrip()
        return text.startswith("{" if first else ",")

    def _string(self, max_length: int) -> None:
        self.out += '"'
        text = self._continue(SLOT_TOKENS, '"\n')
        text = "".join(ch for ch in text if ch.isprintable() and ch != "\\")[:max_length]
        self.out = self.out[:-1] + json.dumps(text, ensure_ascii=False)

    def _enum(self, options: list) -> None:
        self.out += '"'
        text = self._continue(CHOICE_TOKENS, '"\n').strip().lower()
        chosen = next(
            (o for o in options if text and (str(o).startswith(text) or text.startswith(str(o)))),
            options[0],
        )
        self.out = self.out[:-1] + json.dumps(chosen)

    def _integer(self, low: int, high: int) -> None:
        text = self._continue(CHOICE_TOKENS, ",}\n ").strip()
        digits = ""
        for ch in text:
            if not ch.isdigit():
                break
            digits += ch
        value = int(digits) if digits else low
        self.out += str(max(low, min(high, value)))
