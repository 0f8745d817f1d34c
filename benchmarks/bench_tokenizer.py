"""Speed of ``clip.tokenize`` against OpenAI's ``SimpleTokenizer`` on a varied caption corpus.

    python benchmarks/bench_tokenizer.py [--n 5000] [--repeat-fraction 0.3] [--reps 7]
                                         [--seed 0] [--context-length 77] [--json OUT.json]

The corpus (``make_corpus``, fixed seed) mixes short English captions (mixed case, numbers,
contractions, punctuation) with captions holding HTML entities, accented Latin (also
decomposed), CJK/Korean, emoji (skin tones, flags, ZWJ), Arabic/Hebrew/Devanagari, curly
quotes, mojibake (``cafÃ©``), tabs/newlines/``\\r``/form feeds/NUL/ESC sequences/NBSP/
ideographic spaces, and long texts that need ``truncate=True``. A fraction of the entries
(``--repeat-fraction``) repeats earlier captions, half of them drawn from a heavy-tailed
popularity distribution. The mix is printed.

Measured, each ``--reps`` times in interleaved order; the median wall time
(``time.perf_counter``) and the median CPU time of the process (``time.process_time``,
less disturbed by other work on a shared machine) are reported; the garbage collector is
run before and paused during each timed call, as ``timeit`` does:

- ``OpenAI cold``: a fresh ``SimpleTokenizer`` (OpenAI's ``simple_tokenizer.py``, loaded by
  path from ``CLIP_REFERENCE_DIR``; construction not timed), then what OpenAI's
  ``clip.tokenize`` does: ``[sot] + encode(text) + [eot]`` per text, truncation, and a
  zero-padded array filled row by row (NumPy int64 here instead of a torch tensor, so the
  baseline carries no torch overhead).
- ``OpenAI warm``: the same tokenizer again (its BPE cache filled).
- ``ours cold``: ``clip.tokenize(texts, truncate=True)`` after ``_tokenizer.clear_caches()``
  (as a new tokenizer: no cached texts, words or BPE results).
- ``ours warm``: the same call again (every text cached).

``ratio`` = OpenAI's median time / ours, cold against cold and warm against warm (above 1:
we are faster). Before timing, the ids of
both are checked to be identical (the script exits 1 otherwise). The same is done for the
unique texts alone (no repeats), since repeats favour our per-text cache.

The numbers depend on the machine and on whatever else runs on it; the script never judges
them.
"""
import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

WORDS = (
    "a an the photo picture image of with and on in at near by under over two three several "
    "man woman child dog cat bird horse car bus train plane boat bicycle street table kitchen "
    "room beach mountain river tree flower sky snow water field city building window door "
    "red blue green yellow black white small large old young happy sitting standing walking "
    "running eating holding looking playing riding parked flying wooden glass metal plate "
    "pizza sandwich cake coffee cup bottle laptop phone book umbrella clock tower bridge "
    "grass sand road sign light group people close-up view top front side background").split()


def make_corpus(n=5000, repeat_fraction=0.3, seed=0):
    """``n`` captions, of which ``int(n * repeat_fraction)`` repeat earlier ones; and the mix.

    Returns ``(texts, kinds)`` where ``kinds`` maps each kind of caption to how many unique
    texts of that kind there are.
    """
    rng = random.Random(seed)

    def caption(k=None):
        words = [rng.choice(WORDS) for _ in range(k or rng.randint(5, 16))]
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), str(rng.randint(0, 2025)))
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words)),
                         rng.choice(["it's", "don't", "they're", "DOG'S", "we'll"]))
        return " ".join(words) + rng.choice(["", ".", "!", "?", " .", "..."])

    kinds = {
        "plain ASCII caption": (0.60, lambda: caption()),
        "HTML entities": (0.07, lambda: caption().replace(" and ", " &amp; ", 1) + rng.choice(
            [" &lt;3", " &quot;nice&quot;", " it&#39;s", " &amp;amp; more", " caf&eacute;", " AT&T"])),
        "accented Latin": (0.07, lambda: caption() + " " + rng.choice(
            ["café", "naïve", "Ünïcödé", "résumé", "straße", "Łódź", "Ångström", "cafe\u0301"])),
        "CJK / Korean": (0.05, lambda: rng.choice(
            ["一只猫坐在桌子上", "日本語のテキストです", "한국어 텍스트", "北京天安门"]) + " " + caption(4)),
        "emoji": (0.04, lambda: caption(6) + " " + "".join(
            rng.choice(["😀", "👍🏽", "🐱", "🐶", "❤️", "🇺🇸", "👨\u200d💻"])
            for _ in range(rng.randint(1, 4)))),
        "RTL / Devanagari": (0.03, lambda: rng.choice(
            ["مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया"]) + " " + caption(4)),
        "curly quotes": (0.03, lambda: "\u201c" + caption(6) + "\u201d \u2014 it\u2019s " + caption(3)),
        "mojibake": (0.03, lambda: caption(5) + " " + rng.choice(["cafÃ©", "Ã¼ber", "â€™smartâ€™", "Ã©tÃ©"])),
        "control / odd whitespace": (0.04, lambda: caption(4) + rng.choice(
            ["\t", "\n", "\r\n", "\r", "\x0c", "\x00", "\x1b[31m", "\x07", "\u00a0", "\u3000"]) + caption(4)),
        "long (truncated)": (0.04, lambda: " ".join(caption() for _ in range(rng.randint(6, 12)))),
    }
    names = list(kinds)
    weights = [kinds[name][0] for name in names]
    n_unique = n - int(n * repeat_fraction)
    unique, mix = {}, dict.fromkeys(names, 0)
    while len(unique) < n_unique:
        name = rng.choices(names, weights)[0]
        text = kinds[name][1]()
        if text not in unique:
            unique[text] = name
            mix[name] += 1
    unique = list(unique)
    texts = list(unique)
    for _ in range(n - n_unique):
        if rng.random() < 0.5:  # popular captions: heavy-tailed
            texts.append(unique[min(int(rng.paretovariate(1.0)) - 1, n_unique - 1)])
        else:
            texts.append(rng.choice(unique))
    rng.shuffle(texts)
    return texts, mix


def openai_tokenize(tokenizer, texts, context_length=77, truncate=True):
    """OpenAI's ``clip.tokenize`` with its ``SimpleTokenizer``, filling a NumPy array."""
    import numpy as np

    sot_token = tokenizer.encoder["<|startoftext|>"]
    eot_token = tokenizer.encoder["<|endoftext|>"]
    all_tokens = [[sot_token] + tokenizer.encode(text) + [eot_token] for text in texts]
    result = np.zeros((len(all_tokens), context_length), dtype=np.int64)
    for i, tokens in enumerate(all_tokens):
        if len(tokens) > context_length:
            if truncate:
                tokens = tokens[:context_length]
                tokens[-1] = eot_token
            else:
                raise RuntimeError(f"Input {texts[i]} is too long for context length {context_length}")
        result[i, :len(tokens)] = tokens
    return result


def cpu_info():
    model, avx512f = platform.processor() or platform.machine(), None
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        for line in info.splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
        avx512f = "avx512f" in flags.split()
    except OSError:
        pass
    return model, avx512f


def measure(texts, reps, context_length, ref_module, clip_module):
    import numpy as np

    tokenizer = clip_module.clip._tokenizer
    # identity first (fresh tokenizers on both sides)
    expected = openai_tokenize(ref_module.SimpleTokenizer(), texts, context_length)
    tokenizer.clear_caches()
    cold = clip_module.tokenize(texts, context_length=context_length, truncate=True).asnumpy()
    warm = clip_module.tokenize(texts, context_length=context_length, truncate=True).asnumpy()
    identical = bool(np.array_equal(expected, cold) and np.array_equal(expected, warm))

    keys = ("OpenAI cold", "OpenAI warm", "ours cold", "ours warm")
    wall, cpu = {key: [] for key in keys}, {key: [] for key in keys}

    def timed(key, call):
        gc.collect()
        gc.disable()  # as timeit does: no collection of the other side's garbage in between
        try:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            call()
            cpu[key].append(time.process_time() - start_cpu)
            wall[key].append(time.perf_counter() - start_wall)
        finally:
            gc.enable()

    for _ in range(reps):
        ref = ref_module.SimpleTokenizer()
        timed("OpenAI cold", lambda: openai_tokenize(ref, texts, context_length))
        timed("OpenAI warm", lambda: openai_tokenize(ref, texts, context_length))
        tokenizer.clear_caches()
        timed("ours cold", lambda: clip_module.tokenize(texts, context_length=context_length, truncate=True))
        timed("ours warm", lambda: clip_module.tokenize(texts, context_length=context_length, truncate=True))
    median = {clock: {key: statistics.median(values[key]) for key in keys}
              for clock, values in (("wall", wall), ("cpu", cpu))}
    return identical, median, {"wall": wall, "cpu": cpu}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="number of captions (default 5000)")
    parser.add_argument("--repeat-fraction", type=float, default=0.3,
                        help="fraction of entries repeating earlier captions (default 0.3)")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions; median reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--context-length", type=int, default=77)
    parser.add_argument("--json", help="write every number to this file")
    args = parser.parse_args(argv)

    import reference  # tests/reference.py: OpenAI's code by path, CLIP_REFERENCE_DIR

    ref_module = reference.tokenizer_module()
    import clip
    from clip import simple_tokenizer

    texts, mix = make_corpus(args.n, args.repeat_fraction, args.seed)
    unique = list(dict.fromkeys(texts))
    model, avx512f = cpu_info()
    shortcut = sum(map(simple_tokenizer.ftfy_is_identity, unique))
    print(f"CPU: {model}; avx512f in /proc/cpuinfo: {avx512f}; Python {platform.python_version()}")
    print(f"corpus: {len(texts)} captions, {len(unique)} unique, seed {args.seed}; "
          f"{shortcut} unique texts ({100.0 * shortcut / len(unique):.0f}%) skip ftfy")
    print("unique texts by kind: " + ", ".join(f"{name} {count}" for name, count in mix.items()))

    report = {"cpu_model": model, "avx512f": avx512f, "python": platform.python_version(),
              "n": len(texts), "unique": len(unique), "mix": mix, "ftfy_skipped": shortcut,
              "reps": args.reps, "context_length": args.context_length, "runs": {}}
    all_identical = True
    for label, corpus in [("mix (with repeats)", texts), ("unique texts only", unique)]:
        identical, median, times = measure(corpus, args.reps, args.context_length, ref_module, clip)
        all_identical &= identical
        print(f"\n{label}: {len(corpus)} captions, ids identical to OpenAI's: {identical}")
        print(f"  {'':12} {'wall ms':>9} {'us/caption':>11} {'ratio':>7} {'CPU ms':>9} {'ratio':>7}")
        for key in ("OpenAI cold", "OpenAI warm", "ours cold", "ours warm"):
            base = "OpenAI " + key.split()[1]
            row = f"  {key:12}"
            for clock in ("wall", "cpu"):
                seconds = median[clock][key]
                row += f" {seconds * 1e3:9.1f}"
                if clock == "wall":
                    row += f" {seconds / len(corpus) * 1e6:11.1f}"
                row += f" {median[clock][base] / seconds:6.1f}x"
            print(row)
        print(f"  ours cold vs OpenAI cold: {median['wall']['OpenAI cold'] / median['wall']['ours cold']:.1f}x "
              f"wall, {median['cpu']['OpenAI cold'] / median['cpu']['ours cold']:.1f}x CPU; "
              f"ours cold vs OpenAI warm: {median['wall']['OpenAI warm'] / median['wall']['ours cold']:.1f}x wall")
        report["runs"][label] = {"identical": identical, "median_s": median, "times_s": times}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if all_identical else 1


if __name__ == "__main__":
    sys.exit(main())
