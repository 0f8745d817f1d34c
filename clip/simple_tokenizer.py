"""CLIP's byte-level BPE tokenizer.

Produces exactly the token ids of OpenAI's ``clip.simple_tokenizer.SimpleTokenizer``:
text is cleaned (ftfy, HTML unescaping, whitespace collapsing, lower-casing), split
into words with a Unicode-aware regular expression, each word's UTF-8 bytes are
mapped to printable characters and then merged with the 48,894 highest-priority
byte-pair merges of ``bpe_simple_vocab_16e6.txt.gz``.  The vocabulary has 49,408
entries: 256 byte symbols, the same 256 marked as word endings (``</w>``), one entry
per merge, and the two special tokens ``<|startoftext|>`` and ``<|endoftext|>``.
"""
import gzip
import html
import operator
import os
import zlib
from functools import lru_cache

import ftfy
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

# Special tokens, common English contractions, runs of letters, single digits and
# runs of anything else that is not whitespace.  Applied to lower-cased text.
WORD_PATTERN = (
    r"<\|startoftext\|>|<\|endoftext\|>"
    r"|'s|'t|'re|'ve|'m|'ll|'d"
    r"|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)


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
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


def whitespace_clean(text):
    """Collapse every run of whitespace to a single space and strip the ends."""
    return re.sub(r"\s+", " ", text).strip()


def _merge_pair(word, pair):
    """Replace non-overlapping occurrences of ``pair`` in ``word``, scanning left to right."""
    first, second = pair
    merged = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == first and word[i + 1] == second:
            merged.append(first + second)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


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
        ranks = self.bpe_ranks
        while len(word) > 1:
            # Each pair has a distinct rank, so the best-ranked pair is unique.
            best = min(zip(word, word[1:]), key=lambda pair: ranks.get(pair, float("inf")))
            if best not in ranks:
                break
            word = _merge_pair(word, best)
        result = " ".join(word)
        self.cache[token] = result
        return result

    def encode(self, text):
        """Return the list of BPE token ids of ``text`` (without start/end tokens)."""
        if not isinstance(text, str):
            raise TypeError(f"text to encode must be a str, got {type(text).__name__}")
        text = whitespace_clean(basic_clean(text)).lower()
        ids = []
        for word in self.pat.findall(text):
            mapped = "".join(self.byte_encoder[byte] for byte in word.encode("utf-8"))
            ids.extend(self.encoder[symbol] for symbol in self.bpe(mapped).split(" "))
        return ids

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
