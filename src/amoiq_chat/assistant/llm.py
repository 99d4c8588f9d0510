"""An assistant backed by an OpenAI-compatible chat-completions endpoint, with the FAQ assistant as fallback."""
from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..jsonutil import dumps
from .base import Assistant, Conversation
from .faq import NAME

log = logging.getLogger(__name__)

HISTORY_ROLES = {"visitor": "user", "agent": "assistant", "ai": "assistant"}
MAX_REPLY = 4000  # characters kept of a model's answer


def system_prompt(conversation: Conversation) -> str:
    """The model's instructions: who it speaks for, and the widget's FAQ as reference."""
    lines = [f"You are the support assistant of {conversation.business_name or 'this website'}. "
             "Answer briefly and politely. When you cannot help, offer to bring in a person."]
    if conversation.welcome_message:
        lines.append(f"The website greets visitors with: {conversation.welcome_message}")
    if conversation.faq:
        lines.append("Frequently asked questions (keywords -> answer):")
        lines += [f"- {', '.join(e.get('keywords') or ())} -> {e.get('answer')}" for e in conversation.faq]
    return "\n".join(lines)


def request_body(model: str, conversation: Conversation) -> dict[str, Any]:
    """The chat-completions request: system context, the recent messages, then the visitor's message."""
    messages = [{"role": "system", "content": system_prompt(conversation)}]
    messages += [{"role": HISTORY_ROLES.get(sender, "user"), "content": text} for sender, text in conversation.history]
    if not conversation.history or conversation.history[-1] != ("visitor", conversation.text):
        messages.append({"role": "user", "content": conversation.text})
    body: dict[str, Any] = {"messages": messages}
    if model:
        body["model"] = model
    return body


class LlmAssistant:
    """Asks the model; on an error, a bad answer or a timeout, the fallback answers (logged without secrets)."""

    name = NAME

    def __init__(self, url: str, model: str, api_key: str, *, timeout: float, fallback: Assistant) -> None:
        self.url = url
        self.model = model
        self._api_key = api_key
        self.timeout = timeout
        self.fallback = fallback
        self.failures = 0
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP client."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def reply(self, conversation: Conversation) -> list[str]:
        """The model's answer, or the fallback's when the model fails."""
        try:
            return [await self._ask(conversation)]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the model is down, slow or answers nonsense: the visitor still gets an answer
            self.failures += 1
            log.warning("assistant model at %s failed (%s); the FAQ assistant answers", _shown(self.url),
                        self._describe(exc))
            return await self.fallback.reply(conversation)

    def _describe(self, exc: BaseException) -> str:
        """A failure in a few words: its kind and message, never the key (nor the URL's query)."""
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return "timed out"
        text = f"{type(exc).__name__}: {exc}".replace(self.url, _shown(self.url))
        return (text.replace(self._api_key, "***") if self._api_key else text)[:200]

    async def _ask(self, conversation: Conversation) -> str:
        if self._http is None:
            raise RuntimeError("the assistant's HTTP client is not open")
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        async with asyncio.timeout(self.timeout):
            async with self._http.post(self.url, data=dumps(request_body(self.model, conversation)),
                                       headers=headers) as resp:
                if resp.status != 200:
                    raise ModelError(f"HTTP {resp.status}")
                answer = await resp.json(content_type=None)
        try:
            text = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ModelError("no choices[0].message.content in the answer") from None
        if not isinstance(text, str) or not text.strip():
            raise ModelError("an empty answer")
        return text.strip()[:MAX_REPLY]


class ModelError(Exception):
    """The model answered, but not with a usable reply."""


def _shown(url: str) -> str:
    """The model's URL as logged: scheme, host and path (a query or user part may carry a key)."""
    parts = urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
