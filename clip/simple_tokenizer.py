"""CLIP's byte-level BPE tokenizer.

Produces exactly the token ids of OpenAI's ``clip.simple_tokenizer.SimpleTokenizer``:
text is cleaned (ftfy, HTML unescaping, whitespace collapsing, lower-casing), split
into words with a Unicode-aware regular expression, each word's UTF-8 bytes are
mapped to printable characters and then merged with the 48,894 highest-priority
byte-pair merges of ``bpe_simple_vocab_16e6.txt.gz``.  The vocabulary has 49,408
entries: 256 byte symbols, the same 256 marked as word endings (``</w>``), one entry
per merge, and the two special tokens ``<|startoftext|>`` and ``<|endoftext|>``.

Speed (the ids never differ from OpenAI's; ``tests/test_tokenizer.py`` checks it and
``benchmarks/bench_tokenizer.py`` measures it):

* ftfy and the HTML unescaping are skipped for texts on which they provably change
  nothing (``ftfy_is_identity``); other texts go through ``_fix_text``, which runs
  ftfy 6.0 - 6.3's own steps without its per-call overhead (any other ftfy version:
  plain ``ftfy.fix_text``).
* The cleaned text is cut at spaces; each piece ("chunk") and each word is looked up
  in a cache of token ids, so the word regex and BPE run once per distinct piece.
* Ids are cached per text (bounded LRU) as int32 bytes, which ``token_array`` (used
  by ``clip.tokenize``) copies into the padded array without a Python loop.
"""
import gzip
import html
import operator
import os
import re as std_re
import unicodedata
import zlib
from array import array
from functools import lru_cache

import ftfy
import numpy as np
import regex as re

__all__ = [
    "SimpleTokenizer",
    "default_bpe",
    "bytes_to_unicode",
    "get_pairs",
    "basic_clean",
    "whitespace_clean",
]

SOT_TEXT = "<|startoftext|>"
EOT_TEXT = "<|endoftext|>"
END_OF_WORD = "</w>"

# CLIP's text vocabulary has 49152 entries before the special tokens; 2 * 256 of them
# are byte symbols, so only the first 49152 - 256 - 2 merges of the file are used.
NUM_MERGES = 49152 - 256 - 2

# Bounds of the per-tokenizer caches: texts (least recently used evicted) and
# words / whitespace-separated pieces (each table is emptied when it is full).  Longer
# strings are not cached (they are rarely repeated and would hold much memory).
TEXT_CACHE_SIZE = 1 << 15
TEXT_CACHE_MAX_CHARS = 1024
WORD_CACHE_SIZE = 1 << 18
WORD_CACHE_MAX_CHARS = 256

_NO_RANK = float("inf")

# Token ids in the caches: native int32 (array typecode with 4-byte items).
_ID_TYPECODE = next(code for code in "ilh" if array(code).itemsize == 4)
_ID_SIZE = 4

# Special tokens, common English contractions, runs of letters, single digits and
# runs of anything else that is not whitespace.  Applied to lower-cased text.
WORD_PATTERN = (
    r"<\|startoftext\|>|<\|endoftext\|>"
    r"|'s|'t|'re|'ve|'m|'ll|'d"
    r"|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)

# The word regex (WORD_PATTERN, IGNORECASE) restricted to lower-cased ASCII text: \p{L}
# is [a-z], \p{N} is [0-9] and the regex module's \s is [\t\n\x0b\x0c\r ] (it does
# not match U+001C-U+001F).  Checked against the regex module in the tests.
_ASCII_WORDS = std_re.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\t\n\x0b\x0c\r a-z0-9]+")


@lru_cache()
def default_bpe():
    """Return the path of the BPE merges file shipped with the package."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpe_simple_vocab_16e6.txt.gz")


@lru_cache()
def bytes_to_unicode():
    """Return a dict mapping each of the 256 byte values to a printable unicode character.

    Bytes that are already visible Latin-1 characters map to themselves; the remaining
    bytes (control characters, space, ...) map, in byte order, to the characters
    U+0100, U+0101, ...  BPE therefore operates on strings without whitespace or
    control characters while staying reversible.  The dict's insertion order
    (visible bytes first) defines the ids of the byte symbols in the vocabulary.
    """
    visible = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\N{INVERTED EXCLAMATION MARK}"), ord("\N{NOT SIGN}") + 1),
        *range(ord("\N{REGISTERED SIGN}"), ord("\N{LATIN SMALL LETTER Y WITH DIAERESIS}") + 1),
    ]
    table = {byte: chr(byte) for byte in visible}
    substitute = 256
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(substitute)
            substitute += 1
    return table


def get_pairs(word):
    """Return the set of adjacent symbol pairs of ``word`` (a sequence of strings)."""
    return set(zip(word, word[1:]))


def basic_clean(text):
    """Fix mojibake with ftfy, unescape HTML entities twice and strip surrounding whitespace."""
    text = _fix_text(text)  # == ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


_WHITESPACE_RUN = re.compile(r"\s+")


def whitespace_clean(text):
    """Collapse every run of whitespace to a single space and strip the ends."""
    return _WHITESPACE_RUN.sub(" ", text).strip()


# ---------------------------------------------------------------------------
# ftfy.fix_text, faster, with the same result
# ---------------------------------------------------------------------------
#
# ftfy 6.0 - 6.3 (compared line by line: 6.0.3, 6.1.1, 6.2.3 and 6.3.1) implement
# ``fix_text(text)`` with the default configuration as follows.  The text is
# cut into segments after each "\n" (and every 1,000,000 characters).  HTML unescaping
# is switched off for a segment, and for all later ones, once a segment contains "<".
# Each segment goes through ``fix_and_explain``, which repeats, until a round changes
# nothing: ``unescape_html`` (rewrites "&...;" only), ``fix_encoding`` (returns the
# text unchanged when it is ASCII or when ``ftfy.badness.is_bad`` finds no mojibake),
# the character-level fixers ``fix_c1_controls`` (U+0080-U+009F),
# ``fix_latin_ligatures`` (the keys of ``chardata.LIGATURES``), ``fix_character_width``
# (the keys of ``chardata.WIDTH_MAP``), ``uncurl_quotes`` (U+02BC, U+2018-U+201F),
# ``fix_line_breaks`` (\r, U+2028, U+2029, U+0085), ``fix_surrogates``
# (U+D800-U+DFFF), ``remove_terminal_escapes`` (ESC [ ... sequences) and
# ``remove_control_chars`` (the keys of ``chardata.CONTROL_CHARS``: U+0000-U+0008,
# U+000B, U+000E-U+001F, U+007F, ...), then NFC normalisation.
#
# ``_fix_text`` runs exactly these steps, calling ftfy's own functions, without ftfy's
# per-call configuration objects, skipping the eight fixers when the text holds none of
# the characters they act on; ``is_bad``'s regex only searches windows around the
# characters that each of its matches needs (``_analyse_mojibake_regex``).
# ``ftfy_is_identity`` recognises texts on which every step is provably the identity.
# Any other ftfy version (also a later 6.x), or a missing internal, falls back to plain
# ``ftfy.fix_text`` and gets no shortcut.

_FTFY_SEGMENT_LIMIT = 1_000_000  # ftfy's default max_decode_length


def _ftfy_version():
    try:
        return tuple(int(part) for part in ftfy.__version__.split(".")[:2])
    except (AttributeError, ValueError):
        return None


def _char_class(codepoints):
    """A ``[...]`` regular-expression class matching exactly the given code points."""
    ranges = []
    for point in sorted(set(codepoints)):
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    return "[" + "".join(
        f"\\U{low:08x}" if low == high else f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges) + "]"


def _analyse_mojibake_regex(pattern):
    """``(required, width)`` for the compiled regex ``pattern`` (ftfy's BADNESS_RE).

    ``required``: a set of code points of which every match contains at least one, or
    None.  The pattern is parsed with Python's own regular-expression parser; each
    top-level alternative must contain a mandatory single character drawn from an
    explicit set (a literal, or a class of literals and ranges); per alternative the
    smallest such set without ASCII characters (if any) is taken.

    ``width``: the longest possible match, if the pattern only uses constructs whose
    matching depends on the matched characters alone (and ``^``), so that a match
    around position ``p`` is found by ``pattern.search(text, p - width + 1, p + width)``;
    else None.
    """
    try:
        try:
            from re import _constants as C, _parser as P  # Python >= 3.11
        except ImportError:  # pragma: no cover - older Pythons
            import sre_constants as C
            import sre_parse as P
        if pattern.flags & (std_re.IGNORECASE | std_re.MULTILINE):
            return None, None
        parsed = P.parse(pattern.pattern, pattern.flags)
        local_ops = {C.LITERAL, C.NOT_LITERAL, C.IN, C.ANY, C.BRANCH, C.SUBPATTERN,
                     C.MAX_REPEAT, C.MIN_REPEAT}
        at_start = {C.AT_BEGINNING, C.AT_BEGINNING_STRING}
    except Exception:  # noqa: BLE001 - any surprise means "no prefilter"
        return None, None

    def candidates(sequence):
        found = []
        for op, arg in sequence:
            if op is C.LITERAL:
                found.append({arg})
            elif op is C.IN:
                chars = set()
                for item_op, item_arg in arg:
                    if item_op is C.LITERAL:
                        chars.add(item_arg)
                    elif item_op is C.RANGE:
                        chars.update(range(item_arg[0], item_arg[1] + 1))
                    else:  # NEGATE, CATEGORY, ...: not an explicit set
                        break
                else:
                    found.append(chars)
            elif op is C.SUBPATTERN and not (arg[1] & std_re.IGNORECASE):
                found.extend(candidates(arg[-1]))
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and arg[0] >= 1:
                found.extend(candidates(arg[2]))
        return found

    def only_local(sequence):
        for op, arg in sequence:
            if op is C.AT:
                if arg not in at_start:
                    return False
            elif op not in local_ops:
                return False
            elif op is C.BRANCH and not all(only_local(item) for item in arg[1]):
                return False
            elif op is C.SUBPATTERN and (arg[1] or arg[2] or not only_local(arg[-1])):
                return False  # (inline flags such as (?m:...) are not analysed)
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and not only_local(arg[2]):
                return False
        return True

    top = list(parsed)
    alternatives = top[0][1][1] if len(top) == 1 and top[0][0] is C.BRANCH else [top]
    required = set()
    for alternative in alternatives:
        sets = candidates(alternative)
        if not sets:
            return None, None
        non_ascii = [chars for chars in sets if min(chars) >= 0x80]
        required |= min(non_ascii or sets, key=len)
    width = parsed.getwidth()[1]
    if not only_local(parsed) or width >= C.MAXREPEAT or width < 1:
        width = None
    return required, width


def _build_ftfy_steps():
    """ftfy's functions used by ``_fix_text``, or None if this ftfy is not 6.0 - 6.3."""
    version = _ftfy_version()
    if version is None or not (6, 0) <= version < (6, 4):
        return None
    try:
        from ftfy import chardata, fixes
        from ftfy.badness import BADNESS_RE, is_bad
        steps = {
            "unescape_html": fixes.unescape_html,
            "fix_encoding": ftfy.fix_encoding,
            "possible_encoding": chardata.possible_encoding,
            "is_bad": is_bad,
            "fixers": tuple(getattr(fixes, name) for name in (
                "fix_c1_controls", "fix_latin_ligatures", "fix_character_width", "uncurl_quotes",
                "fix_line_breaks", "fix_surrogates", "remove_terminal_escapes", "remove_control_chars")),
        }
        fixer_chars = set(chardata.LIGATURES) | set(chardata.WIDTH_MAP) | set(chardata.CONTROL_CHARS)
    except (ImportError, AttributeError, TypeError):
        return None
    # Every character that one of the eight fixers may change or remove; a text without
    # any of them passes through all eight unchanged.
    fixer_chars |= set(range(0x80, 0xA0))                   # fix_c1_controls
    fixer_chars |= {0x02BC} | set(range(0x2018, 0x2020))    # uncurl_quotes
    fixer_chars |= {ord("\r"), 0x2028, 0x2029, 0x85}        # fix_line_breaks
    fixer_chars |= set(range(0xD800, 0xE000))               # fix_surrogates
    fixer_chars |= {0x1B}                                   # remove_terminal_escapes (ESC [ ...)
    steps["fixer_chars"] = std_re.compile(_char_class(fixer_chars))
    # Rule 2 of ftfy_is_identity: no fixer character, no "&" (HTML) and no "\n" (segments).
    steps["unsafe"] = std_re.compile(_char_class(fixer_chars | {ord("&"), ord("\n")}))
    required, width = _analyse_mojibake_regex(BADNESS_RE)
    steps["mojibake_prefilter"] = None if required is None else std_re.compile(_char_class(required))
    steps["mojibake_regex"] = BADNESS_RE  # is_bad(text) is bool(BADNESS_RE.search(text))
    steps["mojibake_width"] = width if required is not None else None
    return steps


_FTFY = _build_ftfy_steps()

# Rule 1 of ftfy_is_identity: printable ASCII, tab, \n, form feed, \r; no "&".
_ASCII_UNSAFE = std_re.compile(r"[^\t\n\x0c\r -%'-~]")


def _windowed_search(regex, prefilter, width, text):
    """Whether ``regex`` matches ``text``, given that every match holds a character
    matched by ``prefilter`` and is at most ``width`` long (see
    ``_analyse_mojibake_regex``): only windows within ``width - 1`` characters of such
    a character are searched."""
    if len(text) <= 4 * width:
        return prefilter.search(text) is not None and regex.search(text) is not None
    start = end = -1
    for match in prefilter.finditer(text):
        position = match.start()
        if position - width + 1 > end:  # a new window; search the previous one
            if end > start and regex.search(text, start, end):
                return True
            start = max(0, position - width + 1)
        end = min(len(text), position + width)
    return end > start and regex.search(text, start, end) is not None


def _is_bad(text):
    """``ftfy.badness.is_bad(text)``, searching only near characters a match needs."""
    prefilter, width = _FTFY["mojibake_prefilter"], _FTFY["mojibake_width"]
    if prefilter is None:
        return _FTFY["is_bad"](text)
    if width is None:
        return prefilter.search(text) is not None and _FTFY["is_bad"](text)
    return _windowed_search(_FTFY["mojibake_regex"], prefilter, width, text)


def ftfy_is_identity(text):
    r"""True if cleaning ``text`` provably needs neither ftfy nor the HTML unescaping.

    That is: ``text`` has no "&" and ``ftfy.fix_text(text)`` returns ``text``, except
    that "\r\n" and "\r" may become "\n" (whitespace all the same to the tokenizer).

    1. Printable ASCII plus tab, \n, form feed and \r, without "&": every step of
       fix_text is the identity except ``fix_line_breaks`` (the "\r" above).  (U+001C to
       U+001F are excluded: ftfy deletes them, and ``regex``'s \s does not match them
       although ``str.split`` does.)
    2. Other text without "&", "\n" and any character a fixer may change, that is
       NFC-normalised and that ``is_bad`` does not flag: a single segment on which
       every step is the identity, so ftfy's loop stops after one round.

    For such texts ``basic_clean`` is ``str.strip`` and whitespace may be split with
    ``str.split``.  False means "not known", not "ftfy changes it".
    """
    if _FTFY is None:
        return False
    if text.isascii():
        return _ASCII_UNSAFE.search(text) is None
    return (len(text) < _FTFY_SEGMENT_LIMIT
            and _FTFY["unsafe"].search(text) is None
            and unicodedata.is_normalized("NFC", text)
            and not _is_bad(text))


def _fix_segment(text, unescape_html):
    """``ftfy.fix_and_explain(text, config)[0]`` for one segment (ftfy 6.0 - 6.3)."""
    steps = _FTFY
    unescape, possible_encoding = steps["unescape_html"], steps["possible_encoding"]
    fixers, fix_encoding, fixer_chars = steps["fixers"], steps["fix_encoding"], steps["fixer_chars"]
    normalize = unicodedata.normalize
    while True:
        original = text
        if unescape_html and "&" in text:  # ftfy's entity regex starts with "&"
            text = unescape(text)
        # fix_encoding returns the text unchanged when it is ASCII or not is_bad.
        if not possible_encoding(text, "ascii") and _is_bad(text):
            text = fix_encoding(text)
        if fixer_chars.search(text) is not None:  # else all eight are the identity
            for fixer in fixers:
                text = fixer(text)
        text = normalize("NFC", text)
        if text == original:
            return text


def _fix_text(text):
    """``ftfy.fix_text(text)`` (default configuration), faster for ftfy 6.0 - 6.3."""
    if _FTFY is None:
        return ftfy.fix_text(text)
    if "\n" not in text and len(text) <= _FTFY_SEGMENT_LIMIT:
        return _fix_segment(text, "<" not in text) if text else text
    out, pos, unescape_html = [], 0, True
    while pos < len(text):
        end = text.find("\n", pos) + 1
        if end == 0:
            end = len(text)
        if end - pos > _FTFY_SEGMENT_LIMIT:
            end = pos + _FTFY_SEGMENT_LIMIT
        segment = text[pos:end]
        if unescape_html and "<" in segment:
            unescape_html = False  # for this segment and all later ones, as ftfy does
        out.append(_fix_segment(segment, unescape_html))
        pos = end
    return "".join(out)


def _read_merges(bpe_path):
    """Read the merge rules used by CLIP from a gzipped BPE file, with clear errors."""
    try:
        with gzip.open(bpe_path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"BPE vocabulary file not found: {bpe_path!r}") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ValueError(f"BPE vocabulary file {bpe_path!r} is not a valid gzip file: {e}") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"BPE vocabulary file {bpe_path!r} is not UTF-8 text: {e}") from e

    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # final newline
    # The first line is a version header; merges follow, one "left right" pair per line.
    merges = []
    for lineno, line in enumerate(lines[1:NUM_MERGES + 1], start=2):
        pair = tuple(line.split())
        if len(pair) != 2:
            raise ValueError(
                f"BPE vocabulary file {bpe_path!r} is corrupt: line {lineno} should hold "
                f"two symbols separated by a space, got {line!r}")
        merges.append(pair)
    if not merges:
        raise ValueError(f"BPE vocabulary file {bpe_path!r} contains no merges")
    return merges


class SimpleTokenizer:
    """CLIP's byte-level BPE tokenizer, token-for-token identical to OpenAI's.

    Public attributes (same as OpenAI's): ``encoder`` (symbol -> id), ``decoder``
    (id -> symbol), ``byte_encoder``/``byte_decoder`` (byte <-> printable character),
    ``bpe_ranks`` (merge pair -> priority, lower merges first), ``cache`` (word ->
    space-separated BPE symbols) and ``pat`` (the compiled word-splitting regex).
    ``sot_token`` and ``eot_token`` give the ids of ``<|startoftext|>`` and
    ``<|endoftext|>``.

    Additions: ``token_array`` (the rows of ``clip.tokenize`` as a NumPy array) and
    ``clear_caches``.  Results are cached per text (LRU, ``TEXT_CACHE_SIZE`` texts of at
    most ``TEXT_CACHE_MAX_CHARS`` characters), per whitespace-separated piece and per word
    (each up to ``WORD_CACHE_SIZE`` entries of at most ``WORD_CACHE_MAX_CHARS``
    characters, emptied when full); the caches never change the ids.

    Differences from OpenAI's class, all on invalid input only: ``encode`` raises
    ``TypeError`` for a non-``str`` argument; ``decode`` raises ``ValueError`` naming
    the id for an id outside the vocabulary (OpenAI raises a bare ``KeyError``) and
    ``TypeError`` for a non-integer id; a missing or corrupt vocabulary file raises
    ``FileNotFoundError``/``ValueError`` naming the path.
    """

    def __init__(self, bpe_path: str = default_bpe()):
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {char: byte for byte, char in self.byte_encoder.items()}

        merges = _read_merges(bpe_path)
        byte_symbols = list(self.byte_encoder.values())
        vocab = (
            byte_symbols
            + [symbol + END_OF_WORD for symbol in byte_symbols]
            + ["".join(pair) for pair in merges]
            + [SOT_TEXT, EOT_TEXT]
        )
        self.encoder = {symbol: index for index, symbol in enumerate(vocab)}
        self.decoder = {index: symbol for symbol, index in self.encoder.items()}
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.cache = {SOT_TEXT: SOT_TEXT, EOT_TEXT: EOT_TEXT}
        self.pat = re.compile(WORD_PATTERN, re.IGNORECASE)
        # UTF-8 bytes read as Latin-1 characters -> byte symbols, for str.translate.
        self._byte_table = {byte: char for byte, char in self.byte_encoder.items()}
        self._word_ids = {}   # regex word (lower-cased text) -> ids
        self._chunk_ids = {}  # whitespace-free piece of a cleaned text -> ids
        self._text_cache = lru_cache(maxsize=TEXT_CACHE_SIZE)(self._encode_uncached)

    def __getstate__(self):
        # the LRU wrapper cannot be pickled; it is rebuilt (empty) on unpickling
        state = self.__dict__.copy()
        del state["_text_cache"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._text_cache = lru_cache(maxsize=TEXT_CACHE_SIZE)(self._encode_uncached)

    @property
    def sot_token(self):
        """Id of ``<|startoftext|>`` (49406 with the default vocabulary)."""
        return self.encoder[SOT_TEXT]

    @property
    def eot_token(self):
        """Id of ``<|endoftext|>`` (49407 with the default vocabulary)."""
        return self.encoder[EOT_TEXT]

    def bpe(self, token):
        """Apply the BPE merges to one byte-encoded word.

        Returns the resulting symbols joined by single spaces; the last symbol carries
        the ``</w>`` end-of-word marker.  Results are memoised in ``self.cache``.
        """
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        word = [*token[:-1], token[-1] + END_OF_WORD]
        rank_of = self.bpe_ranks.get
        while len(word) > 1:
            pairs = list(zip(word, word[1:]))
            ranks = [rank_of(pair, _NO_RANK) for pair in pairs]
            best = min(ranks)
            if best == _NO_RANK:
                break
            # Each pair has its own rank, so the positions holding ``best`` are exactly the
            # occurrences of the best pair; merge them left to right, never overlapping.
            i = ranks.index(best)
            merged_symbol = "".join(pairs[i])
            merged = word[:i]
            while True:
                merged.append(merged_symbol)
                try:
                    j = ranks.index(best, i + 2)
                except ValueError:
                    merged += word[i + 2:]
                    break
                merged += word[i + 2:j]
                i = j
            word = merged
        result = " ".join(word)
        self.cache[token] = result
        return result

    def encode(self, text):
        """Return the list of BPE token ids of ``text`` (without start/end tokens)."""
        if not isinstance(text, str):
            raise TypeError(f"text to encode must be a str, got {type(text).__name__}")
        return array(_ID_TYPECODE, self._text_ids(text)).tolist()

    def _text_ids(self, text):
        """Token ids of ``text`` as int32 bytes, from the text cache if short enough."""
        if len(text) <= TEXT_CACHE_MAX_CHARS:
            return self._text_cache(text)
        return self._encode_uncached(text)

    def clear_caches(self):
        """Forget every cached result (texts, chunks, words and ``cache``): as new."""
        self._text_cache.cache_clear()
        self._word_ids.clear()
        self._chunk_ids.clear()
        self.cache.clear()
        self.cache.update({SOT_TEXT: SOT_TEXT, EOT_TEXT: EOT_TEXT})

    # The caches hold token ids as the bytes of native int32 arrays: immutable, compact,
    # joined with bytes.join and read by NumPy without a Python loop.

    def _encode_uncached(self, text):
        """Token ids of ``text`` as int32 bytes (``_text_cache`` is its LRU cache)."""
        if ftfy_is_identity(text):
            # basic_clean(text) is text.strip(), and whitespace_clean(...).lower() is
            # " ".join(text.lower().split()) (lower() never makes or removes whitespace).
            chunks = text.lower().split()
        else:
            chunks = whitespace_clean(basic_clean(text)).lower().split(" ")
        # The word regex never matches a space and has no look-around, so the words of
        # the cleaned text are those of its space-separated pieces, in turn.
        found = list(map(self._chunk_ids.get, chunks))
        if None in found:
            for i, ids in enumerate(found):
                if ids is None:
                    found[i] = self._chunk_to_ids(chunks[i])
        return b"".join(found)

    def _chunk_to_ids(self, chunk):
        """Ids of a lower-cased, whitespace-free piece of cleaned text (cached)."""
        ids = self._chunk_ids.get(chunk)
        if ids is not None:
            return ids
        # For ASCII the standard-library twin of the word regex gives the same words.
        words = _ASCII_WORDS.findall(chunk) if chunk.isascii() else self.pat.findall(chunk)
        known = self._word_ids.get
        found = [known(word) for word in words]
        if None in found:
            for i, word_ids in enumerate(found):
                if word_ids is None:
                    found[i] = self._word_to_ids(words[i])
        ids = b"".join(found)
        if len(chunk) <= WORD_CACHE_MAX_CHARS:
            if len(self._chunk_ids) >= WORD_CACHE_SIZE:
                self._chunk_ids.clear()
            self._chunk_ids[chunk] = ids
        return ids

    def _word_to_ids(self, word):
        """Ids of one word found by the word regex (cached)."""
        ids = self._word_ids.get(word)
        if ids is not None:
            return ids
        mapped = word.encode("utf-8").decode("latin-1").translate(self._byte_table)
        encoder = self.encoder
        ids = array(_ID_TYPECODE, [encoder[symbol] for symbol in self.bpe(mapped).split(" ")]).tobytes()
        if len(word) <= WORD_CACHE_MAX_CHARS:
            if len(self._word_ids) >= WORD_CACHE_SIZE:
                self._word_ids.clear()
            self._word_ids[word] = ids
        return ids

    def token_array(self, texts, context_length=77, truncate=False):
        """``clip.tokenize``'s rows as an int32 NumPy array ``[len(texts), context_length]``.

        Row ``i`` is ``[sot] + encode(texts[i]) + [eot]``, zero padded.  A row that does
        not fit raises ``RuntimeError`` (the first such text is named), unless
        ``truncate``: then it keeps its first ``context_length`` ids and the last becomes
        ``eot``, as in OpenAI's ``clip.tokenize``.  Arguments are not validated here.
        """
        count = len(texts)
        result = np.zeros((count, context_length), dtype=np.int32)
        if count == 0:
            return result
        cached, uncached = self._text_cache, self._encode_uncached
        rows = [cached(text) if len(text) <= TEXT_CACHE_MAX_CHARS else uncached(text) for text in texts]
        room = (context_length - 2) * _ID_SIZE  # bytes available between sot and eot
        lengths = np.fromiter(map(len, rows), dtype=np.intp, count=count)
        too_long = np.flatnonzero(lengths > room)
        if too_long.size:
            if not truncate:
                raise RuntimeError(
                    f"Input {texts[too_long[0]]} is too long for context length {context_length}")
            for i in too_long.tolist():
                rows[i] = rows[i][:room]
            lengths[too_long] = room
        lengths //= _ID_SIZE
        ids = np.frombuffer(b"".join(rows), dtype=np.int32)
        # row-major boolean mask: columns 1 .. length of each row, filled in order
        result[:, 1:][np.arange(1, context_length) <= lengths[:, None]] = ids
        result[:, 0] = self.encoder[SOT_TEXT]
        result[np.arange(count), lengths + 1] = self.encoder[EOT_TEXT]
        return result

    def decode(self, tokens):
        """Return the text of a sequence of token ids.

        ``tokens`` is an iterable of integer ids (a list, or a 1-D NumPy array or
        MindSpore tensor).  Each ``</w>`` becomes a space and invalid UTF-8 byte
        sequences become U+FFFD, as in OpenAI's tokenizer.  An id outside the
        vocabulary raises ``ValueError`` naming it (OpenAI raises ``KeyError``).
        """
        if hasattr(tokens, "tolist"):
            tokens = tokens.tolist()
        symbols = []
        for token in tokens:
            try:
                index = operator.index(token)
            except TypeError:
                raise TypeError(
                    f"token ids must be integers, got {token!r} of type {type(token).__name__}") from None
            symbol = self.decoder.get(index)
            if symbol is None:
                raise ValueError(
                    f"token id {index} is not in the vocabulary "
                    f"(valid ids are 0 to {len(self.decoder) - 1})")
            symbols.append(symbol)
        data = bytearray(self.byte_decoder[char] for char in "".join(symbols))
        return data.decode("utf-8", errors="replace").replace(END_OF_WORD, " ")
