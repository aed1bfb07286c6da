"""Strings from archives, servers and tools, made safe to show and to store.

Member names, link targets, gzip header names and error messages quoting them come from
the input: they may hold newlines (a forged line on the terminal), ESC sequences (control
of the terminal), bidirectional overrides, and bytes that are not UTF-8 (decoded with
surrogateescape). rich markup is escaped in console.py, the one module that imports rich.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, line and paragraph separators, zero-width and bidirectional
# formatting characters, and the surrogates that stand for bytes that are not UTF-8.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f"
                     "\ufeff\ufff9-\ufffb\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(m: re.Match[str]) -> str:
    c = m.group()
    o = ord(c)
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8, as surrogateescape keeps it
        return f"\\x{o - 0xDC00:02x}"
    return _NAMED.get(c) or (f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")


def one_line(text: str) -> str:
    """text as one terminal line that controls nothing: unsafe characters as \\n, \\x1b."""
    return _UNSAFE.sub(_escaped, text)


def utf8(text: str) -> str:
    """text that encodes as UTF-8 (for JSON, HTML, SQLite): a byte that was not UTF-8
    becomes the four characters \\xNN, as in one_line."""
    return text if text.isascii() else _SURROGATE.sub(_escaped, text)


_SURROGATE = re.compile("[\ud800-\udfff]")
