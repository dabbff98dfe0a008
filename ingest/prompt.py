"""The chat messages that put a packed context and a question in front of the model."""

from __future__ import annotations

SYSTEM_PROMPT = (
    "You are nsa-assist, an expert engineer who answers questions about the code and "
    "documents given in the context. Answer from the context only. Cite the files you rely "
    "on as path:line (for example `src/app.py:42`), or pages as p. N. If the context does "
    "not hold the answer, say so."
)


def build_messages(context_text: str, question: str) -> list[dict[str, str]]:
    """System and user messages in the role/content form every chat template takes.

    Takes the packed text (not a `Context`) so a worker that received only the stored text
    of a queued job frames it exactly as `nsa ask` does."""
    user = f"Context:\n\n{context_text}\nQuestion: {question.strip()}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def framing_text(question: str) -> str:
    """Everything but the context, to budget for it before packing."""
    return SYSTEM_PROMPT + "\nContext:\n\n\nQuestion: " + question.strip()
