"""An SMTP sink (aiosmtpd) that keeps every message it receives, for the admin API and tests."""

from __future__ import annotations

import asyncio
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from ps_integrations import clock


def _parts(message: EmailMessage) -> dict[str, Any]:
    text = html = None
    attachments = []
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        content_type = part.get_content_type()
        if filename or part.get_content_disposition() == "attachment":
            payload = part.get_payload(decode=True) or b""
            attachments.append({"filename": filename, "content_type": content_type, "size": len(payload)})
        elif content_type == "text/plain" and text is None:
            text = part.get_content()
        elif content_type == "text/html" and html is None:
            html = part.get_content()
        elif content_type.startswith("image/"):
            payload = part.get_payload(decode=True) or b""
            attachments.append(
                {"filename": filename, "content_type": content_type, "size": len(payload), "inline": True}
            )
    return {"text": text, "html": html, "attachments": attachments}


class MessageStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []

    def add(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        record = {
            "mail_from": mail_from,
            "rcpt_tos": list(rcpt_tos),
            "subject": str(message.get("Subject", "")),
            "headers": {key: str(value) for key, value in message.items()},
            "received_at": clock.now().isoformat(),
            "raw": raw.decode("utf-8", errors="replace"),
            **_parts(message),
        }
        with self._lock:
            record["id"] = len(self._messages) + 1
            self._messages.append(record)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> int:
        with self._lock:
            count = len(self._messages)
            self._messages.clear()
            return count


class _Handler:
    def __init__(self, store: MessageStore) -> None:
        self.store = store
        # seconds between keeping a message and answering 250: a client killed meanwhile has
        # delivered a mail it never learned about (the crash case of at-most-once senders)
        self.reply_delay = 0.0
        # hold_reply(): messages to let through first, how long to hold the next replies, and how
        # many replies are held right now (a chaos harness kills the sender meanwhile)
        self.hold_after: int | None = None
        self.hold_seconds = 0.0
        self.holding = 0
        self.generation = 0  # bumped by release_holds(): held replies end at once

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.store.add(envelope.mail_from, envelope.rcpt_tos, envelope.original_content or envelope.content)
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        if self.hold_after is not None:
            if self.hold_after > 0:
                self.hold_after -= 1
            else:
                await self._hold()
        return "250 Message accepted for delivery"

    async def _hold(self) -> None:
        generation = self.generation
        self.holding += 1
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.hold_seconds
            while generation == self.generation and loop.time() < deadline:
                await asyncio.sleep(0.05)
        finally:
            self.holding -= 1


class SmtpSink:
    """Plain SMTP on a local port (no TLS: point the smtp connection at it with disable_ssl/tls)."""

    name = "smtp"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = MessageStore()
        self.host = host
        self._requested_port = port
        self._controller: Controller | None = None
        self.port = 0

    def start(self) -> None:
        port = self._requested_port or _free_port(self.host)
        self.handler = _Handler(self.store)
        self._controller = Controller(self.handler, hostname=self.host, port=port)
        self._controller.start()
        self.port = port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def load_seed(self, seed: dict[str, Any]) -> None:
        self.store.clear()
        self.set_reply_delay(0)
        self.release_holds()

    def hold_reply(self, after: int, seconds: float) -> None:
        """Keep messages as usual, but hold the 250 to every message after the first ``after``
        for ``seconds`` - the mail is delivered, its sender does not know yet."""
        if getattr(self, "handler", None) is not None:
            self.handler.hold_after = max(after, 0)
            self.handler.hold_seconds = float(seconds)

    def release_holds(self) -> None:
        """No more holding; replies held now are sent at once."""
        if getattr(self, "handler", None) is not None:
            self.handler.hold_after = None
            self.handler.generation += 1

    @property
    def holding(self) -> int:
        """Replies held back right now."""
        return self.handler.holding if getattr(self, "handler", None) is not None else 0

    def set_reply_delay(self, seconds: float) -> None:
        """Hold the reply to DATA this long after the message is kept (0: answer at once)."""
        if getattr(self, "handler", None) is not None:
            self.handler.reply_delay = float(seconds)

    def state(self) -> dict[str, Any]:
        return {"messages": self.store.all()}


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
