"""Answers streamed the way Slack's agent experience shows them: `chat.startStream`, then
`chat.appendStream` with each new piece of Markdown, then `chat.stopStream` carrying the tail
(sources, mode/adapter line, feedback buttons, Correct), through slack_sdk's ChatStream.

    stream = AnswerStream(client, channel=C, thread_ts=T, user=U, team=TEAM)
    answer = assistant.answer(question, ..., on_text=stream)      # pieces go out as they are written
    if not stream.finish(view, answer_tail(view)):                 # False: Slack refused the stream
        ...post the whole answer as `markdown` blocks, saying why

Appends never wait: they use a client without retries, and a rate-limited piece stays in
ChatStream's buffer and goes out with the next one, so a slow Slack never slows the model. A piece
that fails otherwise stops the streaming (`error` says why); `finish` then returns False and the
caller delivers the whole answer, so nothing the model wrote is lost. An answer longer than one
message can hold continues in a new streamed message in the same thread."""

from __future__ import annotations

import logging
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web.chat_stream import ChatStream

from bot.slack.answers import MARKDOWN_LIMIT, AnswerView, answer_messages
from bot.slack.markdown import defuse

log = logging.getLogger("apprenti.slack.stream")


def boundary(value: str, limit: int) -> int:
    """Where to cut `value` to at most `limit` characters: a paragraph, line or word break if possible."""
    if len(value) <= limit:
        return len(value)
    window = value[:limit]
    for mark in ("\n\n", "\n", " "):
        cut = window.rfind(mark)
        if cut >= limit // 2:
            return cut + len(mark)
    return limit


def retry_after(exc: SlackApiError) -> float | None:
    """Seconds Slack asks us to wait when the call was rate-limited, else None."""
    if exc.response.get("error") != "ratelimited" and exc.response.status_code != 429:
        return None
    try:
        return float(exc.response.headers.get("Retry-After", 1))
    except (TypeError, ValueError):
        return 1.0


class AnswerStream:
    """The `on_text` callback of one answer: receives the text written so far, streams what is new."""

    def __init__(
        self,
        client: WebClient,
        *,
        channel: str,
        thread_ts: str,
        user: str | None = None,
        team: str | None = None,
        min_chars: int = 256,
        interval: float = 2.0,
        limit: int = MARKDOWN_LIMIT,
    ):
        self.client = WebClient(token=client.token, base_url=client.base_url, timeout=10)
        self.fallback_client = client  # retries rate limits: for the final edit of a reformatted answer
        self.channel, self.thread_ts = channel, thread_ts
        # Slack requires the recipient when streaming into a channel; harmless in a DM
        self.recipient = {"recipient_user_id": user, "recipient_team_id": team}
        self.min_chars, self.interval, self.limit = min_chars, interval, limit
        self.received = ""  # the answer so far, as it will be shown
        self.handed = 0  # characters of `received` given to Slack
        self.part: ChatStream | None = None
        self.part_chars = 0
        self.messages: list[str] = []  # ts of every streamed message, in order
        self.error: str | None = None
        self.last = time.monotonic()

    @property
    def shown(self) -> bool:
        """Whether the person already sees part of the answer."""
        return self.handed > 0 and bool(self.messages or (self.part and self.part.ts))

    # --- while the model writes ---------------------------------------------------------------------
    def __call__(self, written: str) -> None:
        if self.error is not None:
            return
        self.received = defuse(written.lstrip())
        pending = len(self.received) - self.handed
        if pending <= 0 or (pending < self.min_chars and time.monotonic() - self.last < self.interval):
            return
        end = len(self.received) - (1 if self.received.endswith("<") else 0)  # "<!" may be half-written
        try:
            self._send(self.received[self.handed : end])
        except SlackApiError as exc:
            self._refused(exc)

    def _stream(self) -> ChatStream:
        if self.part is None:
            self.part = self.client.chat_stream(
                channel=self.channel, thread_ts=self.thread_ts, buffer_size=1, **self.recipient
            )
            self.part_chars = 0
        return self.part

    def _append(self, piece: str) -> None:
        stream = self._stream()
        self.handed += len(piece)  # from here on ChatStream holds it, even when Slack says "later"
        self.part_chars += len(piece)
        stream.append(markdown_text=piece)
        if stream.ts and stream.ts not in self.messages:
            self.messages.append(stream.ts)

    def _send(self, piece: str) -> None:
        """Append `piece`, continuing in a new message when this one is full."""
        self.last = time.monotonic()
        while piece:
            cut = boundary(piece, self.limit - self.part_chars)
            if cut == len(piece):
                self._append(piece)
                return
            self._append(piece[:cut])
            self._stop()
            piece = piece[cut:]

    def _stop(self, **final) -> None:
        """Stop the current message (with `blocks` for the last one), waiting out a rate limit twice.
        Without a message open, only a final stop (text or blocks) opens one."""
        if self.part is None and not any(final.values()):
            return
        stream = self._stream()
        for attempt in range(3):
            try:
                stream.stop(**final)
                break
            except SlackApiError as exc:
                wait = retry_after(exc)
                if wait is None or attempt == 2:
                    raise
                time.sleep(min(wait, 5.0))
                final.pop("markdown_text", None)  # already in the stream's buffer
        if stream.ts and stream.ts not in self.messages:
            self.messages.append(stream.ts)
        self.part = None

    def _refused(self, exc: SlackApiError) -> None:
        wait = retry_after(exc)
        if wait is not None:
            self.interval = max(self.interval * 2, wait)
            log.info("stream append rate-limited; next one in %.0f s", self.interval)
            return
        self.error = exc.response.get("error") or str(exc)
        log.warning("streaming into %s stopped: %s", self.channel, self.error)

    # --- when the answer is complete -------------------------------------------------------------------
    def finish(self, view: AnswerView, tail: list) -> bool:
        """Send the rest of the answer and stop the stream with `tail`. False when the caller must
        deliver the answer itself (the stream failed or was refused)."""
        if self.error is None:
            final = view.markdown
            streamed = self.received[: self.handed]
            shown = streamed.rstrip()  # the final text is stripped; trailing blanks were already sent
            try:
                if final.startswith(shown):
                    rest = final[len(shown) :]
                    blanks = streamed[len(shown) :]
                    rest = rest[len(blanks) :] if blanks and rest.startswith(blanks) else rest
                    cut = boundary(rest, self.limit - self.part_chars)
                    while cut < len(rest):
                        self._send(rest[:cut])
                        rest = rest[cut:]
                        cut = boundary(rest, self.limit - self.part_chars)
                    self._stop(markdown_text=rest or None, blocks=tail)
                    self.handed = len(final)
                    return True
                return self._replace(view)
            except SlackApiError as exc:
                self.error = exc.response.get("error") or str(exc)
                log.warning("could not finish the stream in %s: %s", self.channel, self.error)
        self.abandon()
        return False

    def _replace(self, view: AnswerView) -> bool:
        """The final text is not what was streamed (its format was repaired): stop the stream and edit
        the message into the final answer when it fits in one."""
        self._stop()
        messages = answer_messages(view)
        if len(self.messages) == 1 and len(messages) == 1:
            self.fallback_client.chat_update(channel=self.channel, ts=self.messages[0], **messages[0])
            return True
        self.error = "the answer was rewritten after it was streamed"
        return False

    def interrupt(self, notice: str) -> bool:
        """The pipeline failed: end what is shown with `notice`. False if nothing was shown yet."""
        if not self.shown or self.error is not None:
            self.abandon()
            return False
        try:
            self._stop(markdown_text=f"\n\n{notice}")
            return True
        except SlackApiError as exc:
            self.error = exc.response.get("error") or str(exc)
            return False

    def abandon(self) -> None:
        """Stop a stream left open, if Slack still takes it; the answer goes out another way."""
        if self.part is None or not self.part.ts:
            self.part = None
            return
        try:
            self._stop()
        except SlackApiError as exc:
            log.info("could not stop the stream in %s: %s", self.channel, exc.response.get("error"))
            self.part = None
