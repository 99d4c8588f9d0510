"""The assistant without network: welcome message, FAQ match, polite fallback; and asking for a person."""
from __future__ import annotations

import re
import unicodedata

from .base import Conversation

NAME = "AI Assistant"
FALLBACK = ("I'm not sure I can answer that one. Would you like to talk to a person? "
            "Just say \"talk to a human\" and I'll bring in someone from our team.")
_WORD = re.compile(r"\w+")

# Asking for a person, in English and a few other languages; matched as whole words in order,
# after case, accents and punctuation are dropped.
PERSON_PHRASES = (
    # English
    "human", "humans", "agent", "live agent", "real person", "a person", "representative", "operator",
    "talk to someone", "speak to someone", "talk to somebody", "speak to somebody", "customer service",
    "someone real", "support team", "talk to a person", "speak with someone",
    # French
    "humain", "un conseiller", "une personne", "parler a quelqu un", "un agent", "service client",
    # Spanish
    "humano", "una persona", "hablar con alguien", "un agente", "persona real",
    # German
    "mensch", "mitarbeiter", "mit jemandem sprechen", "echte person",
    # Portuguese and Italian
    "atendente", "falar com alguem", "pessoa real", "operatore", "parlare con qualcuno", "persona vera",
)


def words(text: str) -> list[str]:
    """Lower-case words without accents or punctuation, plurals folded ("Hours?" -> "hour")."""
    plain = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return [_fold(w) for w in _WORD.findall(plain)]


def _fold(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _contains(haystack: list[str], needle: list[str]) -> bool:
    """True when `needle` occurs in `haystack` as consecutive words."""
    size = len(needle)
    return size > 0 and any(haystack[i:i + size] == needle for i in range(len(haystack) - size + 1))


_PERSON = tuple(words(p) for p in PERSON_PHRASES)


def wants_person(text: str) -> bool:
    """True when a visitor message asks for a person."""
    said = words(text)
    return any(_contains(said, phrase) for phrase in _PERSON)


def best_answer(text: str, faq: list[dict]) -> str | None:
    """The answer of the FAQ entry whose keywords the message matches best (in any order); None when none.

    A keyword matches when all its words are in the message; an entry scores the share of its
    keywords matched, weighted by the words they hold; the first entry wins a tie.
    """
    said = set(words(text))
    best, best_score = None, 0.0
    for entry in faq or ():
        keywords = [words(k) for k in entry.get("keywords") or ()]
        keywords = [k for k in keywords if k]
        if not keywords:
            continue
        matched = [k for k in keywords if said.issuperset(k)]
        if not matched:
            continue
        score = sum(len(k) for k in matched) + len(matched) / len(keywords)
        if score > best_score:
            best, best_score = entry.get("answer"), score
    return best


class FaqAssistant:
    """Answers from the widget alone: welcome on the first message, then the best FAQ entry, else a fallback."""

    name = NAME

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to release."""

    async def reply(self, conversation: Conversation) -> list[str]:
        """The welcome message first (on the first message), then the FAQ answer or the fallback."""
        texts = []
        if conversation.first and conversation.welcome_message:
            texts.append(conversation.welcome_message)
        answer = best_answer(conversation.text, conversation.faq)
        if answer:
            texts.append(answer)
        elif not texts:
            texts.append(FALLBACK)
        return texts
