"""Telegram's HTML parse mode: the supported tags only, properly closed; the user sees the plain text."""

from __future__ import annotations

import html
import html.parser

from localbotapi.protocol import ApiError

HTML_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
    "span", "tg-spoiler", "tg-emoji", "blockquote",
}


class _HtmlText(html.parser.HTMLParser):
    """Checks the markup as it goes and collects the plain text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise ApiError(400, f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}"')
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            raise ApiError(400, f'Bad Request: can\'t parse entities: Unmatched end tag "{tag}"')

    def handle_data(self, data: str) -> None:
        if "<" in data:  # a bare "<" that is not a tag: Telegram wants it written as &lt;
            raise ApiError(400, f"Bad Request: can't parse entities: Unsupported start tag at \"{data}\"")
        self.text.append(data)

    def handle_entityref(self, name: str) -> None:
        self.text.append(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.text.append(html.unescape(f"&#{name};"))


def plain_text(text: str, parse_mode: str | None) -> str:
    """The text a user sees; HTML markup is checked as Telegram does. Markdown is passed through."""
    if (parse_mode or "").upper() != "HTML":
        return text
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    if parser.open:
        raise ApiError(400, f"Bad Request: can't parse entities: Can't find end tag corresponding to start tag {parser.open[-1]}")
    return "".join(parser.text)
