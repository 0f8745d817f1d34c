"""Tests for clip.prompts: OpenAI's zero-shot class names and prompt templates as Python data."""
import dataclasses
import string
from collections import Counter

import pytest

from clip import prompts
from clip.prompts import (
    CIFAR10_CLASSES,
    CIFAR10_TEMPLATES,
    CIFAR100_CLASSES,
    CIFAR100_TEMPLATES,
    FOOD101_CLASSES,
    FOOD101_TEMPLATES,
    IMAGENET_CLASSES,
    IMAGENET_TEMPLATES,
    IMAGENET_TEMPLATES_SUBSET,
    PROMPT_SETS,
    PromptSet,
    UnknownPromptSetError,
    available_prompt_sets,
    get_prompt_set,
)

# (id, OpenAI's title, number of classes, number of templates), counted on
# OpenAI's data/prompts.md and notebooks/Prompt_Engineering_for_ImageNet.ipynb.
EXPECTED = [
    ("birdsnap", "Birdsnap", 500, 1),
    ("caltech101", "Caltech101", 102, 34),
    ("cars", "StanfordCars", 196, 8),
    ("cifar10", "CIFAR10", 10, 18),
    ("cifar100", "CIFAR100", 100, 18),
    ("clevr-counts", "CLEVRCounts", 8, 1),
    ("country211", "Country211", 211, 5),
    ("dtd", "DescribableTextures", 47, 8),
    ("eurosat", "EuroSAT", 10, 3),
    ("fer2013", "FacialEmotionRecognition2013", 7, 6),
    ("fgvc-aircraft", "FGVCAircraft", 100, 2),
    ("flowers102", "Flowers102", 102, 1),
    ("food101", "Food101", 101, 1),
    ("gtsrb", "GTSRB", 43, 3),
    ("hateful-memes", "HatefulMemes", 2, 1),
    ("imagenet", "ImageNet", 1000, 80),
    ("imagenet-7", "ImageNet (7-template subset)", 1000, 7),
    # OpenAI's Kinetics700 list really has 588 names (openai/CLIP issue #158)
    ("kinetics700", "Kinetics700", 588, 28),
    ("kitti", "KITTI", 4, 1),
    ("mnist", "MNIST", 10, 1),
    ("pcam", "PatchCamelyon", 2, 1),
    ("pets", "OxfordPets", 37, 1),
    ("rendered-sst2", "SST2", 2, 1),
    ("resisc45", "RESISC45", 45, 18),
    ("stl10", "STL10", 10, 2),
    ("sun397", "SUN397", 397, 2),
    ("ucf101", "UCF101", 101, 48),
    ("voc2007", "PascalVOC2007", 20, 1),
]
IDS = [e[0] for e in EXPECTED]

# CIFAR-100's fine_label_names as stored in the dataset's "meta" file (label order).
CIFAR100_FINE_LABELS = """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid
otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray
road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar
sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm
""".split()


# ---------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------

def test_available_prompt_sets_lists_every_dataset_sorted():
    assert available_prompt_sets() == sorted(IDS)
    assert list(PROMPT_SETS) == sorted(IDS)
    # 26 datasets of data/prompts.md + ImageNet + the ImageNet 7-template subset
    assert len(PROMPT_SETS) == 28


@pytest.mark.parametrize("name,title,n_classes,n_templates", EXPECTED, ids=IDS)
def test_counts_match_the_published_lists(name, title, n_classes, n_templates):
    s = PROMPT_SETS[name]
    assert s.name == name
    assert s.title == title
    assert len(s.classnames) == s.num_classes == n_classes
    assert len(s.templates) == n_templates
    assert len(s.synonyms) == n_classes


@pytest.mark.parametrize("name", IDS)
def test_templates_have_exactly_one_placeholder_and_format(name):
    s = PROMPT_SETS[name]
    assert len(set(s.templates)) == len(s.templates), "duplicate template"
    for t in s.templates:
        assert isinstance(t, str)
        fields = [f for _, f, _, _ in string.Formatter().parse(t) if f is not None]
        assert fields == [""], t  # one bare {} and no other replacement field
        assert t.count("{}") == 1
        filled = t.format("XYZ")
        assert filled.count("XYZ") == 1 and "{" not in filled and "}" not in filled


@pytest.mark.parametrize("name", IDS)
def test_class_names_are_clean_strings(name):
    s = PROMPT_SETS[name]
    for c in s.classnames:
        assert isinstance(c, str) and c and c == c.strip()
    for c, names in zip(s.classnames, s.synonyms):
        assert names[0] == c


@pytest.mark.parametrize("name", [i for i in IDS if not i.startswith("imagenet")])
def test_class_names_are_unique(name):
    names = PROMPT_SETS[name].classnames
    assert len(set(names)) == len(names)


def test_imagenet_duplicates_are_exactly_the_two_in_openais_notebook():
    # OpenAI's edited list resolves "crane" (bird / machine) and "maillot" (two
    # swimsuit classes), but keeps two names twice: "missile" for labels 657
    # (missile) and 744 (projectile, missile), and "sunglasses" for 836
    # (sunglass) and 837 (sunglasses, dark glasses, shades).
    dupes = {n: [i for i, c in enumerate(IMAGENET_CLASSES) if c == n]
             for n, k in Counter(IMAGENET_CLASSES).items() if k > 1}
    assert dupes == {"missile": [657, 744], "sunglasses": [836, 837]}
    assert len(set(IMAGENET_CLASSES)) == 998


# ---------------------------------------------------------------------------
# known values
# ---------------------------------------------------------------------------

def test_imagenet_spot_values():
    assert IMAGENET_CLASSES[:3] == ("tench", "goldfish", "great white shark")
    assert IMAGENET_CLASSES[999] == "toilet paper"
    # some of OpenAI's edits, at their label index
    assert IMAGENET_CLASSES[21] == "kite (bird of prey)"
    assert IMAGENET_CLASSES[134] == "crane bird"
    assert IMAGENET_CLASSES[517] == "construction crane"
    assert IMAGENET_CLASSES[271] == "red wolf or maned wolf"
    assert IMAGENET_CLASSES[638:640] == ("tights", "one-piece bathing suit")
    assert IMAGENET_CLASSES[677] == "metal nail"


def test_imagenet_templates_and_subset():
    assert IMAGENET_TEMPLATES[0] == "a bad photo of a {}."
    assert IMAGENET_TEMPLATES[-1] == "a tattoo of the {}."
    assert len(set(IMAGENET_TEMPLATES)) == 80
    # the forward-selection subset, in the order it was selected
    assert IMAGENET_TEMPLATES_SUBSET == (
        "itap of a {}.",
        "a bad photo of the {}.",
        "a origami {}.",
        "a photo of the large {}.",
        "a {} in a video game.",
        "art of the {}.",
        "a photo of the small {}.",
    )
    assert set(IMAGENET_TEMPLATES_SUBSET) <= set(IMAGENET_TEMPLATES)
    full, subset = get_prompt_set("imagenet"), get_prompt_set("imagenet-7")
    assert subset.classnames == full.classnames
    assert full.templates == IMAGENET_TEMPLATES and subset.templates == IMAGENET_TEMPLATES_SUBSET


def test_cifar10_is_in_label_order():
    assert CIFAR10_CLASSES == ("airplane", "automobile", "bird", "cat", "deer",
                               "dog", "frog", "horse", "ship", "truck")
    assert CIFAR10_TEMPLATES[0] == "a photo of a {}."
    assert CIFAR10_TEMPLATES[-1] == "a photo of the big {}."


def test_cifar100_matches_the_datasets_fine_label_order():
    assert len(CIFAR100_FINE_LABELS) == 100
    # OpenAI writes the dataset's labels with spaces instead of underscores
    assert CIFAR100_CLASSES == tuple(n.replace("_", " ") for n in CIFAR100_FINE_LABELS)
    assert CIFAR100_CLASSES[1] == "aquarium fish"
    assert CIFAR100_TEMPLATES == CIFAR10_TEMPLATES  # OpenAI uses the same 18 for both


def test_food101_is_in_label_order():
    # Food-101's labels are its folder names in alphabetical order, e.g. apple_pie
    folders = [c.replace(" ", "_") for c in FOOD101_CLASSES]
    assert folders == sorted(folders)
    assert FOOD101_CLASSES[0] == "apple pie" and FOOD101_CLASSES[-1] == "waffles"
    assert FOOD101_TEMPLATES == ("a photo of {}, a type of food.",)


def test_other_published_values():
    g = get_prompt_set
    assert g("birdsnap").classnames[0] == "Acadian Flycatcher"
    assert g("birdsnap").classnames[-1] == "Zone tailed Hawk"
    assert g("birdsnap").templates == ("a photo of a {}, a type of bird.",)
    assert g("caltech101").classnames[:3] == ("background", "off-center face", "centered face")
    assert g("cars").classnames[0] == "AM General Hummer SUV 2000"
    assert "i love my {}!" in g("cars").templates
    assert g("clevr-counts").classnames == ("10", "3", "4", "5", "6", "7", "8", "9")
    assert g("country211").classnames[:2] == ("Andorra", "United Arab Emirates")
    assert "Cote d'Ivoire" in g("country211").classnames
    assert g("dtd").classnames[0] == "banded" and g("dtd").classnames[-1] == "zigzagged"
    assert g("eurosat").classnames[0] == "forest"
    assert g("fgvc-aircraft").classnames[0] == "707-320"
    assert g("flowers102").classnames[0] == "pink primrose"
    assert g("gtsrb").templates[0] == 'a zoomed in photo of a "{}" traffic sign.'
    assert g("hateful-memes").classnames == ("meme", "hatespeech meme")
    assert g("kinetics700").classnames[0] == "abseiling"
    assert g("kinetics700").classnames[-2:] == ("stretching arm", "yoga")
    assert g("kitti").templates == ("{}",)
    assert g("mnist").classnames == tuple(str(i) for i in range(10))
    assert g("mnist").templates == ('a photo of the number: "{}".',)
    assert g("pcam").templates == ("this is a photo of {}",)  # no full stop in the original
    assert g("pets").classnames[0] == "Abyssinian" and g("pets").classnames[-1] == "yorkshire terrier"
    assert g("rendered-sst2").classnames == ("negative", "positive")
    assert g("rendered-sst2").templates == ("a {} review of a movie.",)
    assert g("resisc45").classnames[0] == "airplane"
    assert g("stl10").classnames == ("airplane", "bird", "car", "cat", "deer",
                                     "dog", "horse", "monkey", "ship", "truck")
    assert g("sun397").classnames[0] == "abbey" and g("sun397").classnames[-1] == "youth hostel"
    assert g("ucf101").classnames[0] == "Apply Eye Makeup"
    assert g("voc2007").classnames[-1] == "tvmonitor"


def test_fer2013_synonyms():
    s = get_prompt_set("fer2013")
    assert s.classnames == ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral")
    assert s.synonyms[3] == ("happy", "smiling")
    assert s.synonyms[5] == ("surprised", "shocked", "spooked")
    assert [len(n) for n in s.synonyms] == [1, 1, 1, 2, 2, 3, 2]
    everywhere_else = [p for p in PROMPT_SETS.values() if p.name != "fer2013"]
    assert all(len(n) == 1 for p in everywhere_else for n in p.synonyms)


def test_constants_are_the_registry_data():
    assert get_prompt_set("imagenet").classnames is IMAGENET_CLASSES
    assert get_prompt_set("cifar10").classnames == CIFAR10_CLASSES
    assert get_prompt_set("cifar10").templates == CIFAR10_TEMPLATES
    assert get_prompt_set("cifar100").classnames == CIFAR100_CLASSES
    assert get_prompt_set("food101").classnames == FOOD101_CLASSES
    assert get_prompt_set("food101").templates == FOOD101_TEMPLATES
    for name in prompts.__all__:
        assert hasattr(prompts, name), name


# ---------------------------------------------------------------------------
# building sentences
# ---------------------------------------------------------------------------

def test_prompts_fills_every_template_in_order():
    s = get_prompt_set("cifar10")
    out = s.prompts("dog")
    assert isinstance(out, list) and len(out) == 18
    assert out[0] == "a photo of a dog."
    assert out[-1] == "a photo of the big dog."
    assert out == [t.format("dog") for t in s.templates]
    # any string works, and braces in a class name are not re-interpreted
    assert get_prompt_set("kitti").prompts("{weird} name") == ["{weird} name"]


def test_prompts_rejects_a_label_index():
    with pytest.raises(TypeError):
        get_prompt_set("cifar10").prompts(3)


def test_class_prompts_uses_every_synonym():
    fer = get_prompt_set("fer2013")
    out = fer.class_prompts(5)
    assert len(out) == 3 * 6
    assert out[0] == "a photo of a surprised looking face."
    assert "look at how spooked they are." in out
    cifar = get_prompt_set("cifar10")
    assert cifar.class_prompts(0) == cifar.prompts("airplane")
    allp = cifar.all_prompts()
    assert len(allp) == 10 and allp[9][0] == "a photo of a truck."
    with pytest.raises(IndexError):
        cifar.class_prompts(10)


# ---------------------------------------------------------------------------
# lookups
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("alias,expected", [
    ("cifar-10", "cifar10"), ("CIFAR10", "cifar10"), ("CIFAR_100", "cifar100"),
    ("CIFAR100", "cifar100"), ("ImageNet", "imagenet"), ("imagenet-1k", "imagenet"),
    ("ImageNet-7", "imagenet-7"), ("imagenet7", "imagenet-7"), ("Food-101", "food101"),
    ("StanfordCars", "cars"), ("Stanford Cars", "cars"), ("FGVCAircraft", "fgvc-aircraft"),
    ("fgvc_aircraft", "fgvc-aircraft"), ("DescribableTextures", "dtd"), ("Oxford Pets", "pets"),
    ("OxfordPets", "pets"), ("Flowers102", "flowers102"), ("FER2013", "fer2013"),
    ("FacialEmotionRecognition2013", "fer2013"), ("PatchCamelyon", "pcam"),
    ("SST2", "rendered-sst2"), ("Rendered SST2", "rendered-sst2"), ("CLEVRCounts", "clevr-counts"),
    ("HatefulMemes", "hateful-memes"), ("Kinetics-700", "kinetics700"), ("PascalVOC2007", "voc2007"),
    ("  sun397 ", "sun397"), ("UCF-101", "ucf101"), ("STL-10", "stl10"), ("EuroSAT", "eurosat"),
])
def test_aliases(alias, expected):
    assert get_prompt_set(alias) is PROMPT_SETS[expected]


@pytest.mark.parametrize("name", IDS)
def test_every_id_and_title_resolves_to_its_set(name):
    s = PROMPT_SETS[name]
    assert get_prompt_set(name) is s
    assert get_prompt_set(name.upper()) is s
    if name != "imagenet-7":
        assert get_prompt_set(s.title) is s


def test_unknown_name_raises_and_lists_available_sets():
    with pytest.raises(KeyError) as info:
        get_prompt_set("cifar-1000")
    message = str(info.value)
    assert "cifar-1000" in message
    for name in IDS:
        assert name in message
    # the same error is also a ValueError
    with pytest.raises(ValueError):
        get_prompt_set("")
    assert issubclass(UnknownPromptSetError, KeyError) and issubclass(UnknownPromptSetError, ValueError)


def test_non_string_name_is_a_type_error():
    with pytest.raises(TypeError):
        get_prompt_set(10)


# ---------------------------------------------------------------------------
# immutability and validation
# ---------------------------------------------------------------------------

def test_prompt_sets_are_immutable():
    s = get_prompt_set("cifar10")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.classnames = ("a",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.templates = ()
    assert isinstance(s.classnames, tuple) and isinstance(s.templates, tuple)
    with pytest.raises(TypeError):
        s.classnames[0] = "plane"
    with pytest.raises(TypeError):
        PROMPT_SETS["cifar10"] = s
    with pytest.raises(TypeError):
        del PROMPT_SETS["cifar10"]
    assert hash(s) == hash(get_prompt_set("CIFAR-10"))
    for const in (IMAGENET_CLASSES, IMAGENET_TEMPLATES, IMAGENET_TEMPLATES_SUBSET, CIFAR10_CLASSES,
                  CIFAR10_TEMPLATES, CIFAR100_CLASSES, CIFAR100_TEMPLATES, FOOD101_CLASSES,
                  FOOD101_TEMPLATES):
        assert isinstance(const, tuple)


def test_constructor_stores_tuples_and_validates():
    s = PromptSet("mine", ["cat", "dog"], ["a photo of a {}."])
    assert s.classnames == ("cat", "dog") and s.templates == ("a photo of a {}.",)
    assert s.synonyms == (("cat",), ("dog",))
    assert s.prompts("cat") == ["a photo of a cat."]
    assert repr(s) == "PromptSet(name='mine', title='', classes=2, templates=1)"
    for bad in ["no placeholder", "{} and {}", "a {0} photo", "a {name} photo", "a {} photo }"]:
        with pytest.raises(ValueError):
            PromptSet("mine", ["cat"], [bad])
    with pytest.raises(ValueError):
        PromptSet("mine", [], ["{}"])
    with pytest.raises(ValueError):
        PromptSet("mine", ["cat"], [])
    with pytest.raises(TypeError):
        PromptSet("mine", "cat", ["{}"])
    with pytest.raises(TypeError):
        PromptSet("mine", ["cat", 1], ["{}"])
    with pytest.raises(ValueError):  # synonyms must start with the class name
        PromptSet("mine", ["cat"], ["{}"], synonyms=[("kitten", "cat")])
    with pytest.raises(ValueError):  # one synonym tuple per class
        PromptSet("mine", ["cat", "dog"], ["{}"], synonyms=[("cat",)])


def test_repr_is_short():
    r = repr(get_prompt_set("imagenet"))
    assert r == "PromptSet(name='imagenet', title='ImageNet', classes=1000, templates=80)"
