"""Parity tests of the BPE tokenizer and ``clip.tokenize`` against OpenAI's reference.

The reference is OpenAI's ``simple_tokenizer.py`` loaded by file path (see
``reference.py``); run with ``CLIP_REFERENCE_DIR`` set.
"""
import gzip
import os
import random
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
