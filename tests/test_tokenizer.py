"""Parity tests of the BPE tokenizer and ``clip.tokenize`` against OpenAI's reference.

The reference is OpenAI's ``simple_tokenizer.py`` loaded by file path (see
``reference.py``); run with ``CLIP_REFERENCE_DIR`` set.
"""
import gzip
import os
import random
import re as std_re
import sys

sys.path.insert(0, os.path.dirname(__file__))

import mindspore  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import clip  # noqa: E402
from clip import simple_tokenizer  # noqa: E402
from clip.simple_tokenizer import SimpleTokenizer  # noqa: E402
from reference import tokenizer_module  # noqa: E402

SOT, EOT = 49406, 49407


@pytest.fixture(scope="module")
def ref_module():
    return tokenizer_module()


@pytest.fixture(scope="module")
def ref(ref_module):
    return ref_module.SimpleTokenizer()


@pytest.fixture(scope="module")
def ours():
    return SimpleTokenizer()


LONG_ENGLISH = " ".join(
    f"Sentence number {i}: the quick brown fox doesn't jump over {i * 7} lazy dogs!" for i in range(60))
LONG_MIXED = ("Ünïcödé 漢字かなカナ한국어 العربية עברית हिन्दी ไทย 😀👍🏽 café naïve — " * 40)

CORPUS = [
    # empty and whitespace only
    "", " ", "\t\n  \r\n", "\u00a0\u00a0",
    # ASCII sentences and mixed case
    "a photo of a cat",
    "A Photo Of A DOG.",
    "a diagram of CLIP's architecture",
    "HeLLo WoRLD, ThIs iS MiXeD CaSe",
    "The quick brown fox jumps over the lazy dog.",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "iPhone macOS JavaScript camelCaseIdentifier snake_case_identifier",
    # contractions, including upper case and curly apostrophes
    "it's don't we're they've I'm you'll he'd",
    "IT'S DON'T WE'RE THEY'VE I'M YOU'LL HE'D",
    "'s't're've'm'll'd ''s rock'n'roll o'clock",
    "it\u2019s don\u2019t",
    # numbers
    "0 1 2 3 42 3.14159 -273.15 1,000,000 1e10 0x1F 2024-01-31 12:30",
    "\u0661\u0662\u0663 \u096a\u096b \u2460\u2461 \u00bd \u00b2 \uff11\uff12",
    # punctuation runs and symbols
    "!!!??? ... --- *** ### $$$ %%% ^^^ &&& ((())) [[]] {{}} <<>> ||| \\\\ //",
    "hello!!!world???yes...no",
    "~`@#$%^&*()_+-=[]{}|;:'\",.<>/?",
    "\u201cquoted\u201d \u2018single\u2019 \u00abguillemets\u00bb \u2014 \u2013 \u2026 \u00a7 \u00b6 \u2022",
    # accented Latin, precomposed and with combining marks
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe \u00c5ngstr\u00f6m \u0141\u00f3d\u017a",
    "cafe\u0301 nai\u0308ve n\u0303 a\u0300\u0301\u0302\u0303\u0304",
    "Z\u0351\u036b\u0343a\u0310\u0300l\u0346g\u0352o\u0307",
    "\u0130stanbul \u0130I\u0131i",  # dotted capital I lower-cases to two characters
    "\u1e9e \u00df \ufb01 \ufb02 \u01c4 \u01c5",
    # CJK and other scripts
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002",
    "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
    "\uff21\uff22\uff23 \uff41\uff42\uff43 \uff01\uff1f",  # full-width (ftfy leaves or fixes)
    # emoji, skin tones, flags, ZWJ sequences, variation selectors
    "\U0001f600\U0001f603\U0001f604 \U0001f44d\U0001f3fd \U0001f1fa\U0001f1f8 \U0001f1ef\U0001f1f5",
    "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family",
    "\U0001f468\u200d\U0001f4bb coder \U0001f3f3\ufe0f\u200d\U0001f308 flag \u2764\ufe0f \u2764",
    "cat\U0001f431dog\U0001f436 \U0001f431\U0001f431\U0001f431",
    # HTML entities, double escaped, numeric
    "&amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;apos&#39; &nbsp;",
    "&amp;amp; &amp;lt;tag&amp;gt; &amp;quot;",
    "&#x1F600; &#233; &eacute;t&eacute; &copy; 2024 &hellip;",
    "AT&T Q&A R&D &notanentity;",
    # mojibake that ftfy repairs
    "\u00c3\u00a9t\u00c3\u00a9 \u00e2\u20ac\u0153quoted\u00e2\u20ac\ufffd",
    "Ã¼ber Ã±andÃº â€™smart quotesâ€™",
    "\u00e2\u0153\u201d check \u00c2\u00a0nbsp",
    # whitespace variety
    "tabs\tand\tnewlines\nand\r\ncarriage returns",
    "  leading and trailing  ",
    "no\u00a0break\u2009thin\u3000ideographic\u2003em\u200bzero-width",
    "line\u2028separator\u2029paragraph\x0bvtab\x0cformfeed",
    # control and format characters
    "null\x00byte bell\x07 escape\x1b[31mred\x1b[0m",
    "soft\u00adhyphen left\u200eright\u200fmarks \ufeffbom",
    # special tokens written in the text
    "<|startoftext|>a photo<|endoftext|>",
    "<|STARTOFTEXT|> <|EndOfText|> <|endoftext|<|",
    "</w> text with </w> markers",
    # URLs, code, paths
    "https://example.com/path?query=1&x=y#frag user@example.org",
    "def f(x): return x**2 + 1  # comment",
    "C:\\Users\\name\\file.txt /usr/local/bin",
    # very long texts
    LONG_ENGLISH,
    LONG_MIXED,
    "a" * 3000,
    "\U0001f600" * 1500,
    "ab" * 2000 + " " + "xyz" * 1000,
    "!?" * 2000,
]


@pytest.mark.parametrize("text", CORPUS)
def test_encode_decode_match_reference(ours, ref, text):
    tokens = ours.encode(text)
    expected = ref.encode(text)
    assert tokens == expected
    assert all(type(t) is int for t in tokens)
    assert ours.decode(tokens) == ref.decode(expected)


def test_corpus_is_not_trivial(ref):
    # guard against a corpus that only exercises a few code paths
    assert all(len(ref.encode(text)) > 0 for text in CORPUS[4:])
    assert len(ref.encode(LONG_ENGLISH)) > 1000
    assert len(ref.encode(LONG_MIXED)) > 1000


def _random_texts(count, seed):
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        " \t\n\r\u00a0\u2009\u3000",
        "\u00e0\u00e9\u00ee\u00f5\u00fc\u00e7\u00f1\u00df\u00c0\u00c9\u00d6\u0141\u0131\u0130",
        "\u0301\u0308\u0303\u0327\u0300",  # combining marks
        "\u03b1\u03b2\u03b3\u0394\u03a9\u0436\u0416\u044f\u042f",
        "\u4e00\u4e8c\u4e09\u5927\u5c0f\u732b\u72ac\u3042\u30a2\u30f3\ud55c\uae00",
        "\u0627\u0644\u0639\u0631\u0628\u0629\u05d0\u05d1\u05d2\u0915\u0916\u0e01\u0e02",
        "\U0001f600\U0001f44d\U0001f3fd\U0001f431\u2764\ufe0f\u200d\U0001f1fa\U0001f1f8",
        "\u00c3\u00a9\u00e2\u20ac\u2122",  # mojibake fragments
    ]
    fragments = ["&amp;", "&lt;", "&amp;gt;", "&#233;", "'s", "'T", "'re", "'ll", "<|endoftext|>",
                 "the", "photo", "of", "a"]
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 40)):
            if rng.random() < 0.15:
                parts.append(rng.choice(fragments))
            else:
                parts.append(rng.choice(rng.choice(pools)))
        texts.append("".join(parts))
    return texts


def test_random_texts_match_reference(ours, ref):
    texts = _random_texts(300, seed=1234)
    assert len(set(texts)) > 290
    for text in texts:
        tokens = ours.encode(text)
        expected = ref.encode(text)
        assert tokens == expected, text
        assert ours.decode(tokens) == ref.decode(expected), text


def test_decode_of_arbitrary_ids_matches_reference(ours, ref):
    # random ids produce invalid UTF-8 byte sequences, which decode to U+FFFD
    rng = random.Random(99)
    sequences = [[rng.randrange(49408) for _ in range(rng.randint(0, 30))] for _ in range(200)]
    sequences += [[], [SOT], [EOT], [SOT, EOT], list(range(512)), [188, 189, 190]]
    for ids in sequences:
        assert ours.decode(ids) == ref.decode(ids), ids


def test_vocabulary_tables_match_reference(ours, ref):
    assert list(ours.encoder.items()) == list(ref.encoder.items())
    assert ours.decoder == ref.decoder
    assert ours.bpe_ranks == ref.bpe_ranks
    assert list(ours.byte_encoder.items()) == list(ref.byte_encoder.items())
    assert ours.byte_decoder == ref.byte_decoder
    assert len(ours.encoder) == 49408
    assert ours.pat.pattern == ref.pat.pattern
    assert ours.pat.flags == ref.pat.flags
    assert ours.cache["<|startoftext|>"] == "<|startoftext|>"
    assert ours.cache["<|endoftext|>"] == "<|endoftext|>"


def test_special_token_ids(ours, ref):
    assert ours.sot_token == SOT == ref.encoder["<|startoftext|>"]
    assert ours.eot_token == EOT == ref.encoder["<|endoftext|>"]


def test_module_helpers_match_reference(ref_module):
    assert list(simple_tokenizer.bytes_to_unicode().items()) == list(ref_module.bytes_to_unicode().items())
    for word in [("a",), ("a", "b"), ("a", "b", "a", "b"), ("h", "e", "l", "l", "o</w>"), tuple("aaaa")]:
        assert simple_tokenizer.get_pairs(word) == ref_module.get_pairs(word)
    for text in CORPUS:
        assert simple_tokenizer.basic_clean(text) == ref_module.basic_clean(text)
        assert simple_tokenizer.whitespace_clean(text) == ref_module.whitespace_clean(text)
    assert os.path.isfile(simple_tokenizer.default_bpe())
    assert os.path.basename(simple_tokenizer.default_bpe()) == "bpe_simple_vocab_16e6.txt.gz"
    assert set(simple_tokenizer.__all__) == {
        "SimpleTokenizer", "default_bpe", "bytes_to_unicode", "get_pairs", "basic_clean", "whitespace_clean"}


def test_bpe_method_matches_reference(ours, ref):
    enc = ours.byte_encoder
    words = ["hello", "aaaaaaa", "abababab", "x", "!!!", "\u00e9t\u00e9", "\U0001f600\U0001f600",
             "supercalifragilisticexpialidocious", "\u65e5\u672c\u8a9e"]
    for word in words:
        mapped = "".join(enc[b] for b in word.encode("utf-8"))
        assert ours.bpe(mapped) == ref.bpe(mapped)
        assert ours.cache[mapped] == ours.bpe(mapped)


def test_encode_is_stable_with_cache(ours, ref):
    text = "repeat repeat repeat the same words words"
    first = ours.encode(text)
    assert ours.encode(text) == first == ref.encode(text)


def test_decode_accepts_numpy_and_mindspore(ours, ref):
    ids = ref.encode("a photo of a cat")
    expected = ref.decode(ids)
    assert ours.decode(np.array(ids, dtype=np.int64)) == expected
    assert ours.decode(np.array(ids, dtype=np.int32)) == expected
    assert ours.decode(tuple(ids)) == expected
    assert ours.decode(mindspore.Tensor(np.array(ids, dtype=np.int32))) == expected


@pytest.mark.parametrize("bad_id", [49408, 100000, -1])
def test_decode_unknown_id_raises_value_error(ours, bad_id):
    with pytest.raises(ValueError, match=f"token id {bad_id} is not in the vocabulary"):
        ours.decode([320, bad_id])


@pytest.mark.parametrize("bad", [[1.5], ["a"], [None], [[1, 2]]])
def test_decode_non_integer_raises_type_error(ours, bad):
    with pytest.raises(TypeError, match="token ids must be integers"):
        ours.decode(bad)


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["a list"]])
def test_encode_non_string_raises_type_error(ours, bad):
    with pytest.raises(TypeError, match="must be a str"):
        ours.encode(bad)


def test_missing_vocabulary_file(tmp_path):
    path = str(tmp_path / "nope.txt.gz")
    with pytest.raises(FileNotFoundError, match="nope.txt.gz"):
        SimpleTokenizer(path)


def test_vocabulary_file_not_gzip(tmp_path):
    path = tmp_path / "plain.txt.gz"
    path.write_text("#version: 0.2\na b\n")
    with pytest.raises(ValueError, match="plain.txt.gz.*not a valid gzip"):
        SimpleTokenizer(str(path))


def test_vocabulary_file_truncated_gzip(tmp_path):
    data = gzip.compress(b"#version: 0.2\n" + b"a b\n" * 1000)
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.txt.gz"):
        SimpleTokenizer(str(path))


def test_vocabulary_file_not_utf8(tmp_path):
    path = tmp_path / "latin.txt.gz"
    path.write_bytes(gzip.compress(b"#version: 0.2\n\xff\xfe b\n"))
    with pytest.raises(ValueError, match="latin.txt.gz.*UTF-8"):
        SimpleTokenizer(str(path))


def test_vocabulary_file_malformed_line(tmp_path):
    path = tmp_path / "bad.txt.gz"
    path.write_bytes(gzip.compress("#version: 0.2\nh e\nthree sym bols\n".encode()))
    with pytest.raises(ValueError, match="bad.txt.gz.*line 3"):
        SimpleTokenizer(str(path))


def test_vocabulary_file_without_merges(tmp_path):
    path = tmp_path / "empty.txt.gz"
    path.write_bytes(gzip.compress(b"#version: 0.2\n"))
    with pytest.raises(ValueError, match="empty.txt.gz.*no merges"):
        SimpleTokenizer(str(path))


def test_small_custom_vocabulary_matches_reference(tmp_path, ref_module):
    # a short merges file (with trailing newline) behaves like the reference
    path = tmp_path / "small.txt.gz"
    path.write_bytes(gzip.compress("#version: 0.2\nh e\nl l\nhe ll\no</w> x\nc a\nca t</w>\n".encode()))
    ours, theirs = SimpleTokenizer(str(path)), ref_module.SimpleTokenizer(str(path))
    # the reference keeps the empty line after the final newline as an empty merge;
    # the encodings of real words agree regardless
    for text in ["hello", "cat cats", "hell hello hellcat"]:
        assert ours.encode(text) == theirs.encode(text)
        assert ours.decode(ours.encode(text)) == theirs.decode(theirs.encode(text))


# ---------------------------------------------------------------------------
# clip.tokenize
# ---------------------------------------------------------------------------

def expected_tokenize(ref, texts, context_length=77, truncate=False):
    """OpenAI's ``clip.tokenize`` semantics, built from the reference tokenizer."""
    if isinstance(texts, str):
        texts = [texts]
    sot, eot = ref.encoder["<|startoftext|>"], ref.encoder["<|endoftext|>"]
    result = np.zeros((len(texts), context_length), dtype=np.int64)
    for row, text in enumerate(texts):
        ids = [sot] + ref.encode(text) + [eot]
        if len(ids) > context_length:
            if not truncate:
                raise AssertionError(f"test bug: {text!r} does not fit in {context_length}")
            ids = ids[:context_length]
            ids[-1] = eot
        result[row, :len(ids)] = ids
    return result


def check_tokenize(ref, texts, context_length=77, truncate=False, **kwargs):
    out = clip.tokenize(texts, context_length=context_length, truncate=truncate, **kwargs)
    assert isinstance(out, mindspore.Tensor)
    assert out.dtype == mindspore.int32
    n = 1 if isinstance(texts, str) else len(texts)
    assert tuple(out.shape) == (n, context_length)
    np.testing.assert_array_equal(out.asnumpy(), expected_tokenize(ref, texts, context_length, truncate))
    return out


def test_tokenize_default_context(ref):
    texts = [t for t in CORPUS if len(ref.encode(t)) <= 75]
    assert len(texts) > 40
    check_tokenize(ref, texts)


def test_tokenize_defaults_are_77_and_no_truncation(ref):
    out = clip.tokenize("a photo of a cat")
    assert out.dtype == mindspore.int32
    np.testing.assert_array_equal(out.asnumpy(), expected_tokenize(ref, "a photo of a cat"))
    with pytest.raises(RuntimeError):
        clip.tokenize(LONG_ENGLISH)


def test_tokenize_single_string_and_tuple(ref):
    check_tokenize(ref, "a diagram")
    check_tokenize(ref, ("a dog", "a cat", ""))


def test_tokenize_empty_string(ref):
    out = check_tokenize(ref, "")
    assert out.asnumpy()[0, :3].tolist() == [SOT, EOT, 0]
    assert not out.asnumpy()[0, 2:].any()


def test_tokenize_empty_list():
    for context_length in (77, 16):
        out = clip.tokenize([], context_length=context_length)
        assert isinstance(out, mindspore.Tensor)
        assert out.dtype == mindspore.int32
        assert tuple(out.shape) == (0, context_length)


@pytest.mark.parametrize("context_length", [2, 5, 16, 77, 100])
def test_tokenize_truncate_matches_reference(ref, context_length):
    texts = CORPUS + _random_texts(20, seed=7)
    out = check_tokenize(ref, texts, context_length=context_length, truncate=True)
    # every row starts with SOT and holds an EOT
    arr = out.asnumpy()
    assert (arr[:, 0] == SOT).all()
    assert ((arr == EOT).sum(axis=1) >= 1).all()


@pytest.mark.parametrize("context_length", [5, 16])
def test_tokenize_short_context_without_truncation(ref, context_length):
    texts = [t for t in CORPUS + _random_texts(50, seed=3) if len(ref.encode(t)) <= context_length - 2]
    assert len(texts) >= 5
    check_tokenize(ref, texts, context_length=context_length, truncate=False)


def test_tokenize_exact_fit_boundary(ref):
    text = "a photo of a cat on a mat"
    n = len(ref.encode(text))
    check_tokenize(ref, text, context_length=n + 2)
    with pytest.raises(RuntimeError):
        clip.tokenize(text, context_length=n + 1)
    out = check_tokenize(ref, text, context_length=n + 1, truncate=True)
    assert out.asnumpy()[0, -1] == EOT


def test_tokenize_too_long_error_names_text(ref):
    text = "a photo of a cat sitting on a wooden table next to a window"
    assert len(ref.encode(text)) + 2 > 10
    with pytest.raises(RuntimeError) as excinfo:
        clip.tokenize(["fits", text], context_length=10)
    assert text in str(excinfo.value)


def test_tokenize_very_long_unicode(ref):
    texts = [LONG_MIXED, "\U0001f600" * 1500, "a" * 3000]
    out = check_tokenize(ref, texts, truncate=True)
    assert (out.asnumpy()[:, -1] == EOT).all()
    with pytest.raises(RuntimeError):
        clip.tokenize(LONG_MIXED)


@pytest.mark.parametrize("bad", [["a photo", 3], ["ok", None], [b"bytes"], (["nested"],)])
def test_tokenize_non_string_items(bad):
    with pytest.raises(TypeError):
        clip.tokenize(bad)


@pytest.mark.parametrize("bad", [None, 42, b"a photo", {"a": 1}, 3.5])
def test_tokenize_wrong_input_type(bad):
    with pytest.raises(TypeError):
        clip.tokenize(bad)


@pytest.mark.parametrize("context_length", [1, 0, -5])
def test_tokenize_context_length_too_small(context_length):
    with pytest.raises(ValueError, match="context_length"):
        clip.tokenize("a photo", context_length=context_length)


@pytest.mark.parametrize("context_length", [2.5, 77.0, "77", None])
def test_tokenize_context_length_not_int(context_length):
    with pytest.raises(ValueError, match="context_length"):
        clip.tokenize("a photo", context_length=context_length)


# ---------------------------------------------------------------------------
# Speed-ups (issue 7): shortcuts around ftfy, caches and the batch array.  Every test
# below checks results (ids, cleaned text), never timings.
# ---------------------------------------------------------------------------

CAPTION_WORDS = (
    "a an the photo picture of with and on in at near under two several man woman child dog "
    "cat bird horse car bus train boat street table kitchen beach mountain river tree flower "
    "sky snow water red blue green black white small large old young sitting standing walking "
    "running eating holding riding parked wooden glass pizza cake coffee cup laptop phone book "
    "umbrella clock bridge grass sand road sign light people close-up view").split()

# fragments of each kind, appended to or mixed with English captions
UNICODE_BITS = ["café", "naïve", "résumé", "straße", "Łódź", "Ångström", "cafe\u0301", "İstanbul",
                "ΟΔΟΣ", "ὀδός", "Ünïcödé", "ﬁsh", "Ｆｕｌｌ", "ｶﾀｶﾅ", "½ ² ①"]
CJK_BITS = ["一只猫坐在桌子上", "日本語のテキストです", "한국어 텍스트", "北京天安门", "漢字かなカナ"]
EMOJI_BITS = ["😀", "👍🏽", "🐱", "❤️", "🇺🇸", "👨\u200d💻", "👩\u200d👩\u200d👧", "🏳️\u200d🌈"]
RTL_BITS = ["مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "سلام\u200f", "\u202bעברית\u202c"]
ENTITY_BITS = ["&amp;", "&lt;", "&gt;", "&#39;", "&quot;", "&amp;amp;", "&#233;", "&eacute;", "&nbsp;",
               "&#x201c;", "&copy;", "AT&T", "&notanentity;", "&amp;lt;b&amp;gt;", "&#0;", "&#28;", "&"]
CONTROL_BITS = ["\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\x00", "\x07", "\x1b[31m", "\x1b[0m", "\x1c",
                "\x1f", "\x7f", "\x85", "\u00a0", "\u2028", "\u2029", "\u3000", "\u200b", "\ufeff", "\u00ad"]
MOJIBAKE_BITS = ["cafÃ©", "Ã¼ber", "â€™smartâ€™", "Ã©tÃ©", "â€œquotedâ€\x9d", "Ã¡", "Â£5", "Ãƒ"]
QUOTE_BITS = ["\u201cquoted\u201d", "it\u2019s", "\u2018single\u2019", "\u02bcokina", "\u201e\u201f"]


def varied_captions(count, seed, repeat_fraction=0.3):
    """``count`` captions from a fixed seed: every kind of text the tokenizer meets,
    ~``repeat_fraction`` of them repeating earlier ones."""
    rng = random.Random(seed)

    def caption(lo=3, hi=14):
        words = [rng.choice(CAPTION_WORDS) for _ in range(rng.randint(lo, hi))]
        if rng.random() < 0.3:
            words[0] = words[0].upper() if rng.random() < 0.2 else words[0].capitalize()
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), rng.choice(["it's", "DON'T", "we're", "o'clock", "'ll"]))
        return " ".join(words) + rng.choice(["", ".", "!", "?", " ...", ";)", "!!!"])

    def mixed(bits, times=1):
        text = caption()
        for _ in range(times):
            cut = rng.randint(0, len(text))
            text = text[:cut] + rng.choice(bits) + text[cut:]
        return text

    makers = [
        (40, lambda: caption()),
        (6, lambda: mixed(UNICODE_BITS, rng.randint(1, 2))),
        (5, lambda: mixed(CJK_BITS)),
        (5, lambda: mixed(EMOJI_BITS, rng.randint(1, 3))),
        (4, lambda: mixed(RTL_BITS)),
        (7, lambda: mixed(ENTITY_BITS, rng.randint(1, 3))),
        (7, lambda: mixed(CONTROL_BITS, rng.randint(1, 3))),
        (4, lambda: mixed(MOJIBAKE_BITS)),
        (4, lambda: mixed(QUOTE_BITS, rng.randint(1, 2))),
        (4, lambda: mixed(ENTITY_BITS + CONTROL_BITS + UNICODE_BITS + MOJIBAKE_BITS, 4)),
        (3, lambda: "  ".join(caption() for _ in range(rng.randint(8, 20)))),  # too long for 77
        (1, lambda: rng.choice(["", " ", "\t\r\n", "&amp;", "<|endoftext|>", "\u3000", "\x00"])),
    ]
    weights = [weight for weight, _ in makers]
    texts = []
    for _ in range(count):
        if texts and rng.random() < repeat_fraction:
            texts.append(rng.choice(texts))
        else:
            texts.append(rng.choices(makers, weights)[0][1]())
    return texts


@pytest.fixture(scope="module")
def varied():
    return varied_captions(3000, seed=2024)


def fresh_ours():
    return SimpleTokenizer()


def test_varied_corpus_covers_every_kind(varied):
    assert len(varied) == 3000
    assert 0.6 * 3000 < len(set(varied)) < 0.8 * 3000  # about 30% repeats
    joined = "".join(varied)
    for bits in (UNICODE_BITS, CJK_BITS, EMOJI_BITS, RTL_BITS, ENTITY_BITS, CONTROL_BITS,
                 MOJIBAKE_BITS, QUOTE_BITS):
        assert sum(bit in joined for bit in bits) >= len(bits) - 2
    identity = [simple_tokenizer.ftfy_is_identity(text) for text in set(varied)]
    # both routes (shortcut and ftfy) are exercised many times
    assert 500 < sum(identity) < len(identity) - 300


def test_varied_corpus_encode_matches_reference(ref, varied):
    ours = fresh_ours()
    for text in dict.fromkeys(varied):
        assert ours.encode(text) == ref.encode(text), text


def test_varied_corpus_tokenize_matches_reference(ref, varied):
    # clip.tokenize on the whole batch, truncating the long texts; twice (cold, then cached)
    clip.clip._tokenizer.clear_caches()
    expected = expected_tokenize(ref, varied, truncate=True)
    assert sum(len(ref.encode(text)) > 75 for text in set(varied)) > 10
    for _ in range(2):
        out = clip.tokenize(varied, truncate=True)
        assert out.dtype == mindspore.int32
        np.testing.assert_array_equal(out.asnumpy(), expected)
    # other context lengths reuse the cached ids
    for context_length in (2, 3, 16):
        np.testing.assert_array_equal(
            clip.tokenize(varied, context_length=context_length, truncate=True).asnumpy(),
            expected_tokenize(ref, varied, context_length, truncate=True))


def test_token_array_matches_reference(ref, varied):
    ours = fresh_ours()
    texts = varied[:500]
    arr = ours.token_array(texts, 77, True)
    assert arr.dtype == np.int32 and arr.shape == (500, 77) and arr.flags.writeable
    np.testing.assert_array_equal(arr, expected_tokenize(ref, texts, truncate=True))
    assert ours.token_array([], 77, False).shape == (0, 77)


def test_basic_clean_matches_reference_on_varied_corpus(ref_module, varied):
    for text in dict.fromkeys(varied):
        assert simple_tokenizer.basic_clean(text) == ref_module.basic_clean(text), text


# --- the ftfy shortcuts ----------------------------------------------------

def assert_identity_claim(text):
    """What ``ftfy_is_identity`` promises, checked with ftfy itself."""
    import ftfy
    if simple_tokenizer.ftfy_is_identity(text):
        assert "&" not in text, text
        assert ftfy.fix_text(text) == text.replace("\r\n", "\n").replace("\r", "\n"), text
        if not text.isascii():
            assert ftfy.fix_text(text) == text, text


def test_ftfy_shortcut_is_active():
    # with the installed ftfy (6.0 - 6.3) the shortcuts are on; otherwise these tests prove little
    assert simple_tokenizer._FTFY is not None
    assert simple_tokenizer._FTFY["mojibake_prefilter"] is not None
    for text in ["a photo of a cat", "tabs\tand\nnewlines\r\n", "café au lait", "一只猫", "😀 ok"]:
        assert simple_tokenizer.ftfy_is_identity(text), text
    for text in ["AT&T", "a\x00b", "\x1b[31mred", "a\x1cb", "a\x0bb", "a\x7fb", "cafÃ©", "it\u2019s",
                 "ﬁsh", "\u3000", "cafe\u0301", "line\none é", "é\r", "a\x85b", "\u2028"]:
        assert not simple_tokenizer.ftfy_is_identity(text), text


def test_ftfy_shortcut_boundary_every_ascii_character(ours, ref):
    # each ASCII character alone, between letters, doubled, next to "\r"/"\n" and "&"
    texts = []
    for code in range(128):
        c = chr(code)
        texts += [c, f"a{c}b", f"A{c}{c}B c", f"x{c}\r\ny", f"{c}\n{c}", f"&{c}amp;", f"it{c}s {c}"]
    for text in texts:
        assert_identity_claim(text)
        assert ours.encode(text) == ref.encode(text), repr(text)
    # the ASCII rule accepts exactly printable ASCII but "&", plus tab, \n, form feed, \r
    accepted = {chr(code) for code in range(128) if simple_tokenizer.ftfy_is_identity(f"a{chr(code)}b")}
    assert accepted == {chr(code) for code in range(32, 127)} - {"&"} | {"\t", "\n", "\x0c", "\r"}


def test_ftfy_shortcut_random_ascii_with_controls(ours, ref):
    rng = random.Random(5)
    alphabet = [chr(code) for code in range(128)] + list("aeiou tsnr'") * 6
    for _ in range(1500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert_identity_claim(text)
        assert ours.encode(text) == ref.encode(text), repr(text)


def test_ftfy_shortcut_boundary_unicode_characters(ours, ref):
    # every code point of the ranges where ftfy's fixers act, and neighbours, in contexts
    codepoints = [*range(0x80, 0x250), *range(0x2000, 0x2070), *range(0x3000, 0x3040),
                  *range(0xFB00, 0xFB50), *range(0xFE00, 0xFE10), *range(0xFEFE, 0xFF00),
                  *range(0xFF00, 0xFFF0, 3), *range(0xFFF8, 0x10000), 0xD800, 0xDC00, 0xDFFF,
                  0x1D173, 0x1D17A, 0xE0001, 0xE0067, 0x1F600, 0x10FFFF]
    for code in codepoints:
        c = chr(code)
        for text in (c, f"ab{c}cd", f"é{c}", f"{c}{c} x", f"Ã{c}"):
            assert_identity_claim(text)
            assert ours.encode(text) == ref.encode(text), repr(text)


def test_fixer_characters_cover_every_fixer():
    # each of the eight character-level fixers is the identity on all other code points
    steps = simple_tokenizer._FTFY
    fixer_chars = steps["fixer_chars"]
    others = "".join(chr(code) for code in range(0x110000) if not fixer_chars.match(chr(code)))
    assert 0x10F000 < len(others) < 0x110000
    for fixer in steps["fixers"]:
        for start in range(0, len(others), 1 << 16):
            piece = others[start:start + (1 << 16)]
            assert fixer(piece) == piece, (fixer.__name__, start)
    # and the fixers do change each kind of fixer character
    import ftfy
    for text in ["\x80", "ﬁ", "Ａ", "\u201c", "\r", "\ud800", "\x1b[0m", "\x00"]:
        assert ftfy.fix_text(text) != text


def test_mojibake_prefilter_never_hides_mojibake():
    from ftfy.badness import MOJIBAKE_CATEGORIES, is_bad
    prefilter = simple_tokenizer._FTFY["mojibake_prefilter"]
    assert simple_tokenizer._FTFY["mojibake_width"] is not None  # windowed search is on
    alphabet = sorted(set("".join(MOJIBAKE_CATEGORIES.values())) | set("abcXYZ .,!?'\"0123 \t\n")
                      | set("ÂÃÎÐØÙàœŒ×²³√≈‚ВГРСвЂΒΓΞΟβ€āÄ"))
    ascii_heavy = list("abcdefghij klmnop\n") * 20 + alphabet
    rng = random.Random(11)
    flagged = 0
    for i in range(20000):
        # short texts (one search) and long ones (searched in windows), dense and sparse
        pool, longest = (alphabet, 8) if i % 3 == 0 else (alphabet, 90) if i % 3 == 1 else (ascii_heavy, 90)
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, longest)))
        if is_bad(text):
            flagged += 1
            assert prefilter.search(text), repr(text)
        assert simple_tokenizer._is_bad(text) == is_bad(text), repr(text)
    assert 1000 < flagged < 19000
    # matches at the very start ("^" alternatives) and end of long texts
    for bit in MOJIBAKE_BITS + ["Ã ", "Â ", "a Ã ", "×²", "ГўВЂВќa"]:
        for text in (bit + "x" * 60, "x" * 60 + bit, "y " * 30 + bit + " z" * 30):
            assert simple_tokenizer._is_bad(text) == is_bad(text), repr(text)
    for text in MOJIBAKE_BITS + ["Ã©", "â€œ", "ГўВЂВ" + "ќa", "√±", "×²"]:
        assert simple_tokenizer._is_bad(text) == is_bad(text), text


@pytest.mark.parametrize("pattern, longest", [
    (r"Q[a-z]{6}", 7), (r"[a-z]{6}Q", 7), (r"[a-z]{3}[QR][a-z]{3}", 7), (r"^Q[a-z ]", 2),
    (r"Q\s?[a-z]|[a-z]{2}R", 3), (r"(?:ab|Q)Rc[^x]{2}", 6), (r"[QR][a-z]?[a-z]{0,5}", 7),
    (r"Q.[a-z]", 3), (r"\w{2}Q\w{4}|R", 7),
])
def test_windowed_search_finds_every_match(pattern, longest):
    # synthetic patterns whose required character sits at either end of long matches
    regex = std_re.compile(pattern)
    required, width = simple_tokenizer._analyse_mojibake_regex(regex)
    assert required is not None and required <= {ord("Q"), ord("R")}
    assert width == longest
    prefilter = std_re.compile(simple_tokenizer._char_class(required))
    rng = random.Random(pattern)
    found = 0
    for _ in range(4000):
        text = "".join(rng.choice("abcdefgh  QR\nx") if rng.random() < 0.3 else rng.choice("abcdefgh ")
                       for _ in range(rng.randint(0, 120)))
        expected = regex.search(text) is not None
        found += expected
        assert simple_tokenizer._windowed_search(regex, prefilter, width, text) == expected, repr(text)
    assert 10 <= found < 3900
    # a match right at the start, in the middle and at the end of long texts
    for _ in range(300):
        match = "".join(rng.choice("abcQR ") for _ in range(width))
        for text in (match + " " * 50, " " * 50 + match, " " * 25 + match + " " * 25):
            expected = regex.search(text) is not None
            assert simple_tokenizer._windowed_search(regex, prefilter, width, text) == expected, repr(text)


@pytest.mark.parametrize("pattern, has_required, has_width", [
    (r"Q[a-z]{3}|\w", False, True),     # an alternative without an explicit character set
    (r"Q(?=a)", True, False),           # look-ahead: windows could change the result
    (r"Q$", True, False),
    (r"Q\b", True, False),
    (r"Q[a-z]*", True, False),          # unbounded width
    (r"(?i)Q[a-z]", False, False),      # case-insensitive: not analysed
    (r"(?m:^Q)", True, False),          # inline flags: not analysed
])
def test_mojibake_regex_analysis_refuses_unsafe_patterns(pattern, has_required, has_width):
    required, width = simple_tokenizer._analyse_mojibake_regex(std_re.compile(pattern))
    assert (required is not None) == has_required
    assert (width is not None) == has_width or required is None


def test_fix_text_matches_ftfy(varied):
    import ftfy
    texts = list(dict.fromkeys(varied)) + [
        "a<b\n&amp; after a '<' line\n&lt;", "&amp;\n<\n&amp;", "x &lt; y &amp;amp; z",
        "first\r\nsecond\rthird\u2028fourth\x85", "\n\n&amp;\n", "Ã©\nÃ©\r\nâ€™",
        "&#x1b;[31m &#128; &#xd800;", "ﬁ&amp;ﬂ", "&AMP; &EACUTE; P&EACUTE;REZ", "",
    ]
    for text in texts:
        assert simple_tokenizer._fix_text(text) == ftfy.fix_text(text), repr(text)


def test_fix_text_segment_limit(monkeypatch):
    # segments longer than ftfy's max_decode_length are cut; compare with ftfy using a
    # small limit on both sides
    import ftfy
    monkeypatch.setattr(simple_tokenizer, "_FTFY_SEGMENT_LIMIT", 7)
    rng = random.Random(3)
    pieces = ["Ã©", "&amp;", "<", "\n", "é", "ab", "\u201c", "cafe\u0301", " "]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert simple_tokenizer._fix_text(text) == ftfy.fix_text(text, max_decode_length=7), repr(text)


def test_without_ftfy_shortcuts_results_are_unchanged(monkeypatch, ref, varied):
    # an unknown ftfy version disables every shortcut: plain ftfy.fix_text
    monkeypatch.setattr(simple_tokenizer, "_FTFY", None)
    assert not simple_tokenizer.ftfy_is_identity("a photo")
    ours = fresh_ours()
    for text in list(dict.fromkeys(varied))[:300]:
        assert ours.encode(text) == ref.encode(text), text


@pytest.mark.parametrize("version, supported", [
    ("6.0.3", True), ("6.1.1", True), ("6.2.3", True), ("6.3.1", True), ("6.4.0", False),
    ("7.0", False), ("5.9", False), ("6.3rc1", False), ("unknown", False),
])
def test_shortcuts_only_for_checked_ftfy_versions(monkeypatch, version, supported):
    import ftfy
    monkeypatch.setattr(ftfy, "__version__", version)
    assert (simple_tokenizer._build_ftfy_steps() is not None) == supported


def test_whitespace_facts_the_shortcut_relies_on():
    import sys as _sys
    import regex
    space = regex.compile(r"\s")
    # regex's \s and str.isspace agree except on U+001C-U+001F (excluded by the shortcut)
    differ = [code for code in range(_sys.maxunicode + 1)
              if (space.match(chr(code)) is not None) != chr(code).isspace()]
    assert differ == [0x1C, 0x1D, 0x1E, 0x1F]
    # lower() never creates or removes whitespace
    for code in range(_sys.maxunicode + 1):
        c = chr(code)
        lowered = c.lower()
        if c.isspace():
            assert lowered == c
        else:
            assert not any(x.isspace() for x in lowered), hex(code)


def test_ascii_word_regex_matches_the_word_regex(ours):
    rng = random.Random(8)
    alphabet = [chr(code) for code in range(128)] + list("abcz09'<|>") * 4
    samples = ["<|startoftext|>", "<|endoftext|>x", "'s't're've'm'll'd", "a'sb", "<|startoftext|", "''s"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25))).lower() for _ in range(5000)]
    for text in samples:
        assert simple_tokenizer._ASCII_WORDS.findall(text) == ours.pat.findall(text), repr(text)


@pytest.mark.parametrize("text", [
    "ΟΔΟΣ ΟΔΟΣ\tΟΔΟΣ. ΣΑΣ", "İSTANBUL İi", "it'ſ <|ſtartoftext|> \u212aelvin", "ǅemal ǈ ǋ",
    "ﬀ ﬁ \u1e9e ß", "x\u00a0y\u2009z\u3000w", "a\x0cb\tc", "ا\tب", "\u00a0\u00a0", "\t \x0c",
])
def test_case_and_space_corner_cases(ours, ref, text):
    assert ours.encode(text) == ref.encode(text)
    check_tokenize(ref, [text, text.upper(), text.lower()], truncate=True)


def test_bpe_matches_reference_on_random_words(ref):
    ours = fresh_ours()
    rng = random.Random(21)
    alphabets = ["ab", "aab", "abc ", "thequickbrownfx", "".join(ours.byte_encoder.values())]
    words = ["a" * n for n in range(1, 40)] + ["ab" * n for n in range(1, 20)]
    words += ["".join(rng.choice(rng.choice(alphabets)).strip() or "x" for _ in range(rng.randint(1, 30)))
              for _ in range(2000)]
    enc = ours.byte_encoder
    for word in words:
        mapped = "".join(enc[b] for b in word.encode("utf-8"))
        assert ours.bpe(mapped) == ref.bpe(mapped), word


# --- caches -----------------------------------------------------------------

def test_caches_never_change_results(ref, varied):
    ours = fresh_ours()
    texts = list(dict.fromkeys(varied))[:400]
    first = [ours.encode(text) for text in texts]
    short = [text for text in texts if len(text) <= simple_tokenizer.TEXT_CACHE_MAX_CHARS]
    assert len(texts) - 5 < len(short) < len(texts)  # a few long texts bypass the text cache
    assert ours._text_cache.cache_info().currsize == len(short)
    # the returned lists are copies: mutating them does not touch the cache
    for ids in first:
        ids.append(-1)
        ids[:1] = [12345]
    second = [ours.encode(text) for text in texts]
    assert second == [ref.encode(text) for text in texts]
    # a tokenizer with warm word caches but a cold text cache agrees too
    ours._text_cache.cache_clear()
    assert [ours.encode(text) for text in texts] == second
    ours.clear_caches()
    assert ours.cache == {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
    assert not ours._word_ids and not ours._chunk_ids and ours._text_cache.cache_info().currsize == 0
    assert [ours.encode(text) for text in reversed(texts)] == second[::-1]


def test_tokenize_with_mutated_input_list(ref):
    texts = ["a photo of a cat", "a photo of a dog", "a photo of a cat", "&amp; café"]
    first = clip.tokenize(texts).asnumpy()
    np.testing.assert_array_equal(first, expected_tokenize(ref, texts))
    texts[0] = "a diagram"
    texts.append("a photo of a dog")
    texts[1] += "!"
    second = clip.tokenize(texts).asnumpy()
    np.testing.assert_array_equal(second, expected_tokenize(ref, texts))
    assert (second[2] == first[2]).all()
    # the returned array is a fresh, writable array each time
    second[:] = 0
    np.testing.assert_array_equal(clip.tokenize(texts).asnumpy(), expected_tokenize(ref, texts))


def test_tokenize_repeated_texts_in_one_batch(ref):
    texts = ["a cat", "&lt;b&gt;", "a cat", "", "a cat", "&lt;b&gt;", "Ã©tÃ©"] * 50
    check_tokenize(ref, texts)


def test_bounded_caches(monkeypatch, ref, varied):
    monkeypatch.setattr(simple_tokenizer, "TEXT_CACHE_SIZE", 50)
    monkeypatch.setattr(simple_tokenizer, "WORD_CACHE_SIZE", 40)
    ours = fresh_ours()
    texts = list(dict.fromkeys(varied))[:300]
    for _ in range(2):
        for text in texts:
            assert ours.encode(text) == ref.encode(text), text
            assert len(ours._word_ids) <= 40 and len(ours._chunk_ids) <= 40
        np.testing.assert_array_equal(ours.token_array(texts, 77, True), expected_tokenize(ref, texts, truncate=True))
    info = ours._text_cache.cache_info()
    assert info.maxsize == 50 and info.currsize == 50


def test_long_strings_are_not_cached(monkeypatch, ref):
    monkeypatch.setattr(simple_tokenizer, "TEXT_CACHE_MAX_CHARS", 30)
    monkeypatch.setattr(simple_tokenizer, "WORD_CACHE_MAX_CHARS", 5)
    ours = fresh_ours()
    texts = ["a short one", "a photo of a cat sitting on a long wooden table", "supercalifragilistic!!",
             "x" * 40 + " &amp; " + "é" * 10]
    for _ in range(2):
        for text in texts:
            assert ours.encode(text) == ref.encode(text)
        np.testing.assert_array_equal(ours.token_array(texts, 16, True), expected_tokenize(ref, texts, 16, True))
    assert ours._text_cache.cache_info().currsize == 2  # the texts of at most 30 characters
    assert all(len(key) <= 5 for key in ours._word_ids) and all(len(key) <= 5 for key in ours._chunk_ids)
    assert "supercalifragilistic" not in ours._word_ids and "photo" in ours._word_ids


def test_tokenizer_pickles_and_copies(ref):
    import copy
    import pickle
    ours = fresh_ours()
    text = "a photo of a cat &amp; a café"
    ids = ours.encode(text)
    for other in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
        assert other.encode(text) == ids == ref.encode(text)
        assert other.encode("new text here") == ref.encode("new text here")
