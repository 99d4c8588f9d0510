"""What an assistant sees of a conversation, and what it must do."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Conversation:
    """A visitor message to answer, with the widget's content and the recent history."""

    text: str
    first: bool  # the visitor's first message in this session
    welcome_message: str | None = None
    faq: list[dict] = field(default_factory=list)  # [{"keywords": [...], "answer": "..."}]
    business_name: str | None = None
    history: list[tuple[str, str]] = field(default_factory=list)  # (stored sender_type, text), oldest first


class Assistant(Protocol):
    """Answers a visitor message with one or more texts (never raises for a bad model)."""

    name: str

    async def start(self) -> None:
        """Open what the assistant needs (an HTTP client)."""

    async def close(self) -> None:
        """Release it."""

    async def reply(self, conversation: Conversation) -> list[str]:
        """The texts to send back, in order."""
