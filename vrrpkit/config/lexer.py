"""keepalived.conf's line syntax: comments, quotes, braces, includes, ``@id`` and ``$VAR``.

The lexer turns text into :class:`Line` objects, each one keepalived "line" after all of its
preprocessing, so the parser only sees words and braces. The rules follow keepalived's
``lib/parser.c`` (``read_line``, ``decomment``, ``alloc_strvec_r``), in this order per line:

1. comments: ``#`` or ``!`` to the end of the line, except inside ``"..."``; ``\\#`` and
   ``\\!`` outside quotes are literal characters;
2. ``@id line`` is kept only when ``id`` is the configuration id, ``@^id line`` only when it
   is not (no configuration id: every ``@id`` line is dropped, every ``@^id`` line kept);
3. ``$NAME=value`` defines a parameter (a trailing ``\\`` continues the value on the next
   lines); ``$NAME`` (followed by a blank, ``,``, ``)`` or the end) and ``${NAME}`` are
   replaced, recursively; unknown names stay as written;
4. ``include PATTERN`` (and ``includer``/``includem``/``includew``/``includeb``/``includea``)
   reads the files matching the glob, with ``{a,b}`` alternatives, relative to the directory
   of the including file; directories, other non-regular files and executable files are
   skipped with a warning (an error for ``includer`` and the others), and a file already
   being read (an include loop) is refused;
5. ``{`` and ``}`` outside quotes always stand alone, so ``name {`` and ``{ a b }`` split; the
   text after a brace is read again from step 2, as a line of its own;
6. words are separated by blanks; ``"..."`` is one word without its quotes.

:func:`split_quoted` is keepalived's second splitter, used for script and notify commands:
both quote characters, quotes joining parts of a word, and (optionally) backslash escapes.
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import re
import stat

import attrs

from vrrpkit.config.errors import ConfigFileError
from vrrpkit.config.model import Diagnostic, Location

__all__ = [
    "LexResult",
    "Line",
    "Token",
    "decomment",
    "lex_file",
    "lex_string",
    "split_quoted",
]

logger = logging.getLogger(__name__)

_BLANKS = " \t\f\n\r\v"  # keepalived's WHITE_SPACE_STR: no Unicode blanks
_MAX_INCLUDE_DEPTH = 32
_MAX_FILES = 1000  # files read in one load, repeats included: bounds an include fan-out
_MAX_FILE_SIZE = 16 * 1024 * 1024
_MAX_SUBSTITUTIONS = 1000
_MAX_LINE = 65536
_MAX_BRACE_EXPANSIONS = 1000
_MAX_BRACES = 32
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)((?:[ \t]+[A-Za-z0-9_]+)*)\}")
_INCLUDE = re.compile(r"include([rmwba]?)[ \t]")


@attrs.frozen
class Token:
    """One word (or brace) with where it was written.

    ``kind`` is ``"word"``, ``"open"`` (``{``) or ``"close"`` (``}``); ``quoted`` tells that
    the word was written between double quotes (so ``"{"`` is a word, not a brace).
    """

    value: str
    filename: str
    line: int
    quoted: bool = False
    kind: str = "word"

    @property
    def location(self) -> Location:
        """Where the token was written."""
        return Location(self.filename, self.line)


@attrs.frozen
class Line:
    """One logical keepalived line: its words, or a single brace, and its text."""

    tokens: tuple[Token, ...]
    raw: str
    filename: str
    line: int

    @property
    def location(self) -> Location:
        """Where the line was written."""
        return Location(self.filename, self.line)

    @property
    def is_open(self) -> bool:
        """Whether the line is a lone ``{``."""
        return len(self.tokens) == 1 and self.tokens[0].kind == "open"

    @property
    def is_close(self) -> bool:
        """Whether the line is a lone ``}``."""
        return len(self.tokens) == 1 and self.tokens[0].kind == "close"


@attrs.frozen
class LexResult:
    """The lines of a configuration with its includes, and what went wrong reading it."""

    lines: tuple[Line, ...]
    errors: tuple[ConfigFileError, ...] = ()
    warnings: tuple[Diagnostic, ...] = ()
    #: The files read, in order (the main file first, if it is a file).
    files: tuple[str, ...] = ()


def decomment(text: str) -> tuple[str, bool, bool]:
    """Strip a comment and the surrounding blanks, as keepalived's ``decomment``.

    Returns ``(text, continued, unterminated_quote)``: ``continued`` tells that the line ended
    with a lone ``\\`` (kept at the end of ``text``), which continues a ``$NAME=`` definition.
    """
    text = text.lstrip(" \t")
    out: list[str] = []
    quote = False
    continued = False
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            quote = not quote
        elif c == "\\":
            if i + 1 < n:
                if not quote and text[i + 1] in "#!":
                    out.append(text[i + 1])
                else:
                    out.append(text[i : i + 2])
                i += 2
                continue
            continued = True
            break
        elif not quote and c in "#!":
            break
        out.append(c)
        i += 1
    result = "".join(out).rstrip(" \t")
    if continued:
        result += "\\"
    return result, continued, quote


def _words(text: str, filename: str, line: int) -> tuple[Token, ...]:
    # keepalived's alloc_strvec_r: only double quotes group, and a quoted word ends at the
    # closing quote even if more text follows it.
    tokens: list[Token] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _BLANKS:
            i += 1
        if i >= n:
            break
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                break  # already reported as an unterminated quote
            tokens.append(Token(text[i + 1 : end], filename, line, quoted=True))
            i = end + 1
            continue
        start = i
        while i < n and text[i] not in _BLANKS and text[i] != '"':
            i += 1
        tokens.append(Token(text[start:i], filename, line))
    return tuple(tokens)


def _cut_at_brace(text: str) -> tuple[str, str]:
    """Split ``text`` before its first ``{`` or ``}`` outside double quotes: (line, rest).

    keepalived's read_line: a line that starts with a brace is that brace alone; otherwise
    the line ends before the first brace. The rest is read again as a line of its own.
    """
    if text[0] in "{}":
        return text[0], text[1:].strip(" \t")
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            end = text.find('"', i + 1)
            if end < 0:
                break
            i = end + 1
            continue
        if c in "{}":
            return text[:i].rstrip(" \t"), text[i:].rstrip(" \t")
        i += 1
    return text.rstrip(" \t"), ""


def split_quoted(text: str, *, escapes: bool) -> list[str]:
    """Split like keepalived's ``alloc_strvec_quoted[_escaped]`` (scripts, notify commands).

    Words are separated by blanks; ``'...'`` and ``"..."`` quote (and may join parts of one
    word, as in a shell); with ``escapes``, ``\\n``, ``\\t``, ``\\xHH``, ``\\nnn`` (octal),
    ``\\cC`` and ``\\C`` are decoded, without it a backslash pair is kept as written.
    Raises ValueError for an unterminated quote or a trailing backslash.
    """
    words: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _BLANKS:
            i += 1
        if i >= n:
            return words
        out: list[str] = []
        quote = ""
        while i < n:
            c = text[i]
            if c == "\\":
                if i + 1 >= n:
                    raise ValueError(f"missing escaped character at the end of {text!r}")
                if escapes:
                    decoded, i = _escape(text, i + 1)
                    out.append(decoded)
                else:
                    out.append(text[i : i + 2])
                    i += 2
                continue
            if quote:
                if c == quote:
                    quote = ""
                else:
                    out.append(c)
                i += 1
                continue
            if c in "'\"":
                quote = c
                i += 1
                continue
            if c in _BLANKS:
                break
            out.append(c)
            i += 1
        if quote:
            raise ValueError(f"missing terminating {quote} in {text!r}")
        words.append("".join(out))


_NAMED_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
}
_HEX = "0123456789abcdefABCDEF"


def _escape(text: str, i: int) -> tuple[str, int]:
    """Decode the escape whose character is at ``text[i]``; return it and the next index."""
    c = text[i]
    if c == "x" and i + 1 < len(text) and text[i + 1] in _HEX:
        j = i + 1
        while j < len(text) and j < i + 3 and text[j] in _HEX:
            j += 1
        return chr(int(text[i + 1 : j], 16)), j
    if c == "c" and i + 1 < len(text):
        return chr(ord(text[i + 1]) & 0x1F), i + 2
    if "0" <= c <= "7":
        j = i
        while j < len(text) and j < i + 3 and "0" <= text[j] <= "7":
            j += 1
        return chr(int(text[i:j], 8) & 0xFF), j
    return _NAMED_ESCAPES.get(c, c), i + 1


def _brace_expand(pattern: str) -> list[str]:
    """csh-style ``{a,b}`` alternatives, as glob(GLOB_BRACE) in keepalived's include."""
    start = pattern.find("{")
    if start < 0 or pattern.count("{") > _MAX_BRACES:
        return [pattern]
    depth = 0
    commas: list[int] = []
    end = -1
    for i in range(start, len(pattern)):
        c = pattern[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                end = i
                break
        elif c == "," and depth == 1:
            commas.append(i)
    if end < 0:
        return [pattern]
    if not commas:
        return [pattern[: start + 1] + rest for rest in _brace_expand(pattern[start + 1 :])]
    bounds = [start, *commas, end]
    results: list[str] = []
    for a, b in itertools.pairwise(bounds):
        for expanded in _brace_expand(pattern[:start] + pattern[a + 1 : b] + pattern[end + 1 :]):
            results.append(expanded)
            if len(results) > _MAX_BRACE_EXPANSIONS:
                return results
    return results


def _real_path(path: str) -> str:
    """``path`` with its links resolved, to recognise a file however it is named."""
    try:
        return os.path.realpath(path)
    except ValueError:  # a NUL in the name: it cannot name a file being read
        return path


def _why_skipped(path: str) -> str | None:
    """Why keepalived's include skips ``path`` (check_glob_file), or None if it reads it."""
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:
        return f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
        return "is executable"
    return None


class _Lexer:
    def __init__(self, config_id: str | None) -> None:
        self.config_id = config_id
        self.defs: dict[str, str] = {}
        self.lines: list[Line] = []
        self.errors: list[ConfigFileError] = []
        self.warnings: list[Diagnostic] = []
        self.files: list[str] = []
        self.chain: list[str] = []  # real paths of the files being read, outermost first
        self.too_many_files = False
        self.pending: str | None = None  # the multiline definition being read

    def error(self, message: str, filename: str | None, line: int | None) -> None:
        self.errors.append(ConfigFileError(message, filename=filename, line=line))

    def warn(self, message: str, filename: str, line: int) -> None:
        self.warnings.append(Diagnostic(Location(filename, line), message))

    # -- files -----------------------------------------------------------------------------

    def read_file(self, path: str, where: Location | None) -> None:
        filename, line = (where.filename, where.line) if where else (path, None)
        if self.refused(path, filename, line):
            return
        try:
            info = os.stat(path)
            if not os.path.isfile(path):
                self.error(f"{path}: not a regular file", filename, line)
                return
            if info.st_size > _MAX_FILE_SIZE:
                self.error(f"{path}: larger than {_MAX_FILE_SIZE} bytes", filename, line)
                return
            with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
                text = f.read(_MAX_FILE_SIZE + 1)
        except OSError as exc:
            self.error(f"cannot read {path}: {exc.strerror or exc}", filename, line)
            return
        except ValueError as exc:  # a name the OS cannot encode, or with a NUL
            self.error(f"cannot read {path!r}: {exc}", filename, line)
            return
        self.files.append(path)
        self.feed(text, path)

    def refused(self, path: str, filename: str, line: int | None) -> bool:
        """Whether ``path`` must not be read: it would close an include loop, or one file
        too many (keepalived itself never finishes reading such configurations)."""
        if len(self.files) >= _MAX_FILES:
            if not self.too_many_files:
                self.too_many_files = True
                self.error(
                    f"more than {_MAX_FILES} files read, so the includes fan out too far; "
                    f"{path} and every later file are not read",
                    filename,
                    line,
                )
            return True
        if _real_path(path) in self.chain:
            self.error(
                f"include loop: {path} is already being read (it includes itself, directly "
                "or through other files); not read again",
                filename,
                line,
            )
            return True
        return False

    def feed(self, text: str, filename: str) -> None:
        directory = os.path.dirname(filename) if os.sep in filename else ""
        self.chain.append(_real_path(filename))
        try:
            for number, physical in enumerate(text.split("\n"), 1):
                self.physical(physical.rstrip("\r\n"), filename, number, directory)
        finally:
            self.chain.pop()
        self.pending = None

    def physical(self, text: str, filename: str, number: int, directory: str) -> None:
        if "\0" in text:
            # keepalived ignores a line with embedded NULs, with a configuration error.
            self.error("line contains a NUL character", filename, number)
            return
        if self.pending is not None:
            self.continue_definition(text)
            return
        stripped, _continued, bad_quote = decomment(text)
        if bad_quote:
            self.error(f"unterminated quote in {stripped!r}", filename, number)
        if stripped:
            self.logical(stripped, filename, number, directory, 0)

    def continue_definition(self, text: str) -> None:
        assert self.pending is not None
        name = self.pending
        if not text:
            self.pending = None  # an empty line ends a multiline definition
            return
        stripped, _continued, _bad = decomment(text)
        if stripped.endswith("\\"):
            body = stripped[:-1].rstrip(" \t")
            if body:
                self.defs[name] += body + "\n"
        else:
            self.defs[name] += stripped
            self.pending = None

    # -- one logical line ------------------------------------------------------------------

    def logical(self, text: str, filename: str, number: int, directory: str, depth: int) -> None:
        # keepalived's read_line keeps the text after a brace as the next line to read
        # (line_residue), so an @id, $NAME=, include or further brace there works as on a
        # line of its own.
        rest = text
        while rest:
            rest = self.one_line(rest, filename, number, directory, depth)

    def one_line(self, text: str, filename: str, number: int, directory: str, depth: int) -> str:
        """Process one keepalived line; return the text after its first brace, still unread."""
        if depth > 16:
            self.error("parameter expansion nests too deeply", filename, number)
            return ""
        for _ in range(8):
            if text.startswith("@"):
                kept = self.conditional(text)
                if kept is None:
                    return ""
                text = kept
            if text.startswith("$") and self.definition(text):
                return ""
            if text.startswith(("~SEQ", "~LST")):
                self.error(f"{text[:4]} blocks are not supported", filename, number)
                return ""
            if "$" not in text:
                break
            replaced = self.substitute(text, filename, number, directory)
            if replaced == text:
                break
            if "\n" in replaced:
                for part in replaced.split("\n"):
                    part = part.strip(" \t")
                    if part:
                        self.logical(part, filename, number, directory, depth + 1)
                return ""
            text = replaced.strip(" \t")
            if not text.startswith(("@", "$")):
                break
        if not text:
            return ""
        if _INCLUDE.match(text):
            self.include(text, filename, number, directory)
            return ""
        head, rest = _cut_at_brace(text)
        self.emit(head, filename, number)
        return rest

    def conditional(self, text: str) -> str | None:
        negate = text.startswith("@^")
        start = 2 if negate else 1
        match = re.search(r"[ \t]", text[start:])
        if match is None:
            return None  # nothing after the id: keepalived drops the line
        word = text[start : start + match.start()]
        matches = self.config_id is not None and word == self.config_id
        if matches == negate:
            return None
        return text[start + match.start() :].lstrip(" \t")

    def definition(self, text: str) -> bool:
        match = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)=", text)
        if match is None:
            return False
        name = match.group(1)
        value = text[match.end() :].lstrip(" \t")
        if value.endswith("\\"):
            body = value[:-1].rstrip(" \t")
            self.defs[name] = body + "\n" if body else ""
            self.pending = name
        else:
            self.defs[name] = value
        return True

    def lookup(self, name: str, params: str, directory: str) -> str | None:
        if name in self.defs and not params:
            return self.defs[name]
        if name == "_PWD" and not params:
            return os.path.abspath(directory or os.curdir)
        if name == "_INSTANCE" and not params:
            return self.config_id or ""
        if name == "_HASH" and not params:
            return "#"
        if name == "_BANG" and not params:
            return "!"
        if name == "_ENV" and len(params.split()) == 1:
            return os.environ.get(params.strip(), "")
        return None

    def substitute(self, text: str, filename: str, number: int, directory: str) -> str:
        original = text
        pos = 0
        count = 0
        while True:
            i = text.find("$", pos)
            if i < 0 or i + 1 >= len(text):
                return text
            name, params, end = self.reference(text, i + 1)
            value = None if name is None else self.lookup(name, params, directory)
            if value is None:
                pos = i + 1
                continue
            # Replacement is recursive: the value itself is scanned again (man page).
            text = text[:i] + value + text[end:]
            pos = i
            count += 1
            if count > _MAX_SUBSTITUTIONS or len(text) > _MAX_LINE:
                self.error("parameter substitution does not terminate", filename, number)
                return original

    @staticmethod
    def reference(text: str, i: int) -> tuple[str | None, str, int]:
        if text[i] == "{":
            braced = _BRACED.match(text, i)
            if braced is None:
                return None, "", i
            return braced.group(1), braced.group(2).strip(" \t"), braced.end()
        plain = _NAME.match(text, i)
        if plain is None:
            return None, "", i
        end = plain.end()
        if end < len(text) and text[end] not in " \t,)":
            return None, "", i
        return plain.group(0), "", end

    def include(self, text: str, filename: str, number: int, directory: str) -> None:
        keyword = _INCLUDE.match(text)
        assert keyword is not None
        pattern = text[keyword.end() :].strip(" \t")
        if not pattern:
            self.error("include without a file name", filename, number)
            return
        if len(self.chain) > _MAX_INCLUDE_DEPTH:
            self.error(f"includes nested more than {_MAX_INCLUDE_DEPTH} deep", filename, number)
            return
        if not os.path.isabs(pattern):
            pattern = os.path.join(directory, pattern)
        matches: list[str] = []
        try:
            for alternative in _brace_expand(pattern):
                matches.extend(sorted(glob.glob(alternative)))
        except (OSError, ValueError) as exc:
            self.error(f"include {pattern}: {exc}", filename, number)
            return
        if not matches:
            if keyword.group(1) in ("w", "a"):
                # keepalived refuses the configuration for these two (keepalived -t, 2.2.7).
                self.error(
                    f"{keyword.group(0).strip()} {pattern}: no file matches", filename, number
                )
                return
            # keepalived's plain include reports nothing; a warning saves a debugging session.
            self.warn(f"include {pattern}: no file matches", filename, number)
            return
        where = Location(filename, number)
        for path in matches:
            if self.usable(path, keyword.group(0).rstrip(" \t"), where):
                self.read_file(path, where)

    def usable(self, path: str, keyword: str, where: Location) -> bool:
        """Whether an included ``path`` is read; if not, say why, as keepalived does."""
        reason = _why_skipped(path)
        if reason is None:
            return True
        if keyword == "include":
            message = f"include: {path} {reason}; skipped, as keepalived does"
            self.warn(message, where.filename, where.line)
        else:
            # includer/m/w/b/a (keepalived's INCLUDE_R) make a skipped file an error.
            self.error(f"{keyword}: {path} {reason}", where.filename, where.line)
        return False

    def emit(self, text: str, filename: str, number: int) -> None:
        """Add one line that has no brace, or is a lone brace."""
        if text in ("{", "}"):
            token = Token(text, filename, number, kind="open" if text == "{" else "close")
            self.lines.append(Line((token,), text, filename, number))
            return
        tokens = _words(text, filename, number)
        if tokens:
            self.lines.append(Line(tokens, text, filename, number))

    def result(self) -> LexResult:
        return LexResult(
            tuple(self.lines), tuple(self.errors), tuple(self.warnings), tuple(self.files)
        )


def lex_string(text: str, filename: str = "<string>", *, config_id: str | None = None) -> LexResult:
    """Lex configuration ``text``; includes are relative to ``filename``'s directory."""
    lexer = _Lexer(config_id)
    lexer.feed(text, filename)
    return lexer.result()


def lex_file(path: str | os.PathLike[str], *, config_id: str | None = None) -> LexResult:
    """Lex the configuration file at ``path`` and everything it includes."""
    lexer = _Lexer(config_id)
    lexer.read_file(os.fspath(path), None)
    return lexer.result()
