"""clip.plotting: the similarity heatmap, the top-k charts and the optional matplotlib import."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, ImageDraw

import matplotlib

matplotlib.use("Agg")  # noqa: E402 - before pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from clip import plotting  # noqa: E402
from clip.plotting import image_for_display, plot_similarity, plot_topk  # noqa: E402
from clip.transform import MEAN, Preprocess  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _picture(colour, size=(64, 48)):
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).ellipse((8, 8, size[0] - 8, size[1] - 8), fill=colour)
    return image


def _cell_texts(ax):
    """``{(column, row): text}`` of the value annotations of a heatmap axes."""
    return {(round(t.get_position()[0]), round(t.get_position()[1])): t.get_text() for t in ax.texts}


def test_plot_similarity_draws_values_images_and_labels():
    rng = np.random.default_rng(0)
    similarity = rng.uniform(-0.2, 0.45, size=(3, 4)).astype(np.float32)  # [texts, images]
    pixels = Preprocess(32)(_picture("blue"))
    images = [_picture("red"), pixels, pixels.asnumpy(), np.asarray(_picture("green"))]
    texts = ["a red circle", "a blue circle", "a green circle"]

    fig = plot_similarity(similarity, images, texts, title="my title")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "my title"
    assert [label.get_text() for label in ax.get_yticklabels()] == texts
    assert list(ax.get_xticks()) == []

    # one heatmap plus one picture per column; the heatmap holds the matrix and the colour range
    assert len(ax.images) == 1 + 4
    heatmap = ax.images[0]
    np.testing.assert_allclose(np.asarray(heatmap.get_array()), similarity, rtol=1e-6)
    assert heatmap.norm.vmin == 0.1 and heatmap.norm.vmax == 0.3

    # a value in every cell, equal to the matrix rounded to two decimals
    cells = _cell_texts(ax)
    assert len(ax.texts) == 12
    assert cells == {(col, row): f"{similarity[row, col]:.2f}" for row in range(3) for col in range(4)}
    for (col, row), text in cells.items():
        assert float(text) == pytest.approx(round(float(similarity[row, col]), 2), abs=1e-9)

    # the pictures sit above their columns, inside the visible area, aspect ratio kept
    for col, picture in enumerate(ax.images[1:]):
        left, right, bottom, top = picture.get_extent()
        assert left < col < right and right - left <= 0.9 + 1e-9
        assert top < bottom < -0.5  # y grows downwards: above row 0
        height, width = np.asarray(picture.get_array()).shape[:2]
        assert (right - left) / (bottom - top) == pytest.approx(width / height)
    assert ax.get_xlim() == (-0.5, 3.5)
    assert ax.get_ylim()[0] == 2.5 and ax.get_ylim()[1] < min(p.get_extent()[3] for p in ax.images[1:])
    fig.canvas.draw()  # renders without error


def test_plot_similarity_shows_what_the_model_saw():
    image = _picture("orange", size=(40, 40))
    pixels = Preprocess(40)(image)  # no resize or crop at this size: only the normalisation
    fig = plot_similarity(np.zeros((1, 2)), [image, pixels], ["x"])
    ax = fig.axes[0]
    assert np.array_equal(np.asarray(ax.images[1].get_array()), np.asarray(image))  # PIL: as it is
    shown = np.asarray(ax.images[2].get_array())  # preprocessed: un-normalised to [0, 1]
    assert shown.shape == (40, 40, 3)
    np.testing.assert_allclose(shown, np.asarray(image) / 255.0, atol=1e-5)


def test_image_for_display():
    pixels = Preprocess(16)(_picture("purple", size=(16, 16)))
    expected = np.asarray(_picture("purple", size=(16, 16))) / 255.0
    np.testing.assert_allclose(image_for_display(pixels), expected, atol=1e-5)
    np.testing.assert_allclose(image_for_display(pixels.asnumpy()[None]), expected, atol=1e-5)  # [1, 3, R, R]
    extreme = np.stack([np.full((4, 4), 9.0), np.full((4, 4), -9.0), np.zeros((4, 4))])
    np.testing.assert_allclose(image_for_display(extreme)[0, 0], [1.0, 0.0, MEAN[2]], atol=1e-6)  # clipped
    gray = np.zeros((5, 6), np.uint8)
    assert image_for_display(gray) is gray
    assert image_for_display(Image.new("L", (6, 5))).shape == (5, 6, 3)
    for bad in (np.zeros((5,)), np.zeros((2, 5, 5)), np.zeros((5, 5, 2), np.uint8)):
        with pytest.raises(ValueError, match="cannot display an image array"):
            image_for_display(bad)
    with pytest.raises(TypeError):
        image_for_display(np.array(["a", "b"]))


def test_plot_similarity_without_images_and_into_given_axes():
    similarity = np.array([[0.12, 0.31], [0.2, 0.05]])
    fig = plot_similarity(similarity, None, ["first", "second"], title=None)
    ax = fig.axes[0]
    assert len(ax.images) == 1 and ax.get_title() == ""
    assert ax.get_ylim() == (1.5, -0.5)

    fig2, (left, right) = plt.subplots(1, 2)
    returned = plot_similarity(similarity, [_picture("red"), _picture("blue")], ["first", "second"], ax=right)
    assert returned is fig2
    assert len(left.images) == 0 and len(right.images) == 3
    assert _cell_texts(right)[(1, 0)] == "0.31"


def test_plot_similarity_checks_its_inputs():
    images = [_picture("red"), _picture("blue")]
    with pytest.raises(ValueError, match="2 rows but 3 texts"):
        plot_similarity(np.zeros((2, 2)), images, ["a", "b", "c"])
    with pytest.raises(ValueError, match="3 columns but 2 images"):
        plot_similarity(np.zeros((2, 3)), images, ["a", "b"])
    with pytest.raises(ValueError, match="matrix"):
        plot_similarity(np.zeros(2), images, ["a", "b"])
    with pytest.raises(TypeError, match="single string"):
        plot_similarity(np.zeros((1, 2)), images, "a")
    with pytest.raises(ValueError, match="vmax"):
        plot_similarity(np.zeros((2, 2)), images, ["a", "b"], vmin=0.3, vmax=0.1)


def test_plot_topk_charts_the_best_labels():
    classnames = [f"class {i}" for i in range(7)]
    probs = np.array([[0.05, 0.4, 0.1, 0.2, 0.05, 0.15, 0.05],
                      [0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2],   # ties: the lower index first
                      [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    images = [_picture("red"), Preprocess(32)(_picture("blue")), _picture("green")]
    fig = plot_topk(probs, classnames, images, k=4, columns=2, titles=["one", "two", "three"])
    charts = {ax.get_label(): ax for ax in fig.axes}
    assert sorted(charts) == sorted([f"topk-{i}" for i in range(3)] + [f"image-{i}" for i in range(3)])
    for n in range(3):
        chart = charts[f"topk-{n}"]
        order = np.argsort(-probs[n], kind="stable")[:4]
        assert [t.get_text() for t in chart.get_yticklabels()] == [classnames[j] for j in order]
        widths = [bar.get_width() for bar in chart.patches]
        np.testing.assert_allclose(widths, probs[n, order])
        assert chart.yaxis_inverted()  # best on top
        assert [t.get_text() for t in chart.texts] == [f" {p:.3f}" for p in probs[n, order]]
        picture = charts[f"image-{n}"]
        assert len(picture.images) == 1 and picture.get_title() == ["one", "two", "three"][n]
    assert [t.get_text() for t in charts["topk-1"].get_yticklabels()] == ["class 0", "class 6", "class 1", "class 2"]
    fig.canvas.draw()


def test_plot_topk_without_images_and_k_clamped():
    probs = np.array([[0.2, 0.5, 0.3]])
    fig = plot_topk(probs, ["a", "b", "c"], k=10, titles=["only charts"])
    assert [ax.get_label() for ax in fig.axes] == ["topk-0"]
    chart = fig.axes[0]
    assert [t.get_text() for t in chart.get_yticklabels()] == ["b", "c", "a"]
    assert chart.get_title() == "only charts"
    fig = plot_topk(probs[0], ["a", "b", "c"], k=1)  # one row given as a vector
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["b"]


def test_plot_topk_long_titles_are_wrapped():
    title = "a yellow sun above green hills under a wide blue sky"
    fig = plot_topk(np.array([[0.5, 0.5]]), ["x", "y"], [_picture("red")], titles=[title])
    shown = {ax.get_label(): ax for ax in fig.axes}["image-0"].get_title()
    assert "\n" in shown and shown.replace("\n", " ") == title


def test_plot_topk_checks_its_inputs():
    probs = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="3 columns but 2 classnames"):
        plot_topk(probs, ["a", "b"])
    with pytest.raises(ValueError, match="2 rows but 1 images"):
        plot_topk(probs, ["a", "b", "c"], [_picture("red")])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        plot_topk(probs, ["a", "b", "c"], k=0)
    with pytest.raises(ValueError, match="2 rows but 3 titles"):
        plot_topk(probs, ["a", "b", "c"], titles=["x", "y", "z"])
    with pytest.raises(TypeError, match="numbers"):
        plot_topk(np.array([["a", "b"]]), ["a", "b"])


def test_plot_functions_accept_mindspore_tensors():
    from mindspore import Tensor

    fig = plot_similarity(Tensor(np.array([[0.25]], np.float32)), [_picture("red")], ["a red circle"])
    assert _cell_texts(fig.axes[0]) == {(0, 0): "0.25"}
    fig = plot_topk(Tensor(np.array([[0.1, 0.9]], np.float32)), ["no", "yes"], k=1)
    assert fig.axes[0].get_yticklabels()[0].get_text() == "yes"


def _run(code, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    environment["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    environment.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=environment, cwd=ROOT)


def test_missing_matplotlib_gives_a_clear_import_error():
    result = _run("""
        import sys
        sys.modules["matplotlib"] = None          # as if matplotlib were not installed
        sys.modules["matplotlib.pyplot"] = None
        import numpy as np
        import clip.plotting                      # importing the module does not need it
        for call in (lambda: clip.plotting.plot_similarity(np.zeros((1, 1)), None, ["a"]),
                     lambda: clip.plotting.plot_topk(np.ones((1, 2)), ["a", "b"])):
            try:
                call()
            except ImportError as error:
                print("ImportError:", error)
            else:
                print("no error")
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(("ImportError", "no error"))]
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("ImportError: clip.plotting needs matplotlib")
        assert "pip install matplotlib" in line and "clip[plot]" in line


def test_headless_runs_select_agg_and_an_explicit_backend_is_kept():
    code = """
        import numpy as np
        import matplotlib
        calls, use = [], matplotlib.use
        matplotlib.use = lambda *args, **kwargs: (calls.append(args), use(*args, **kwargs))
        from clip.plotting import plot_similarity
        fig = plot_similarity(np.zeros((1, 1)), None, ["a"])
        print("backend:", matplotlib.get_backend().lower(), "use:", calls)
    """
    result = _run(code)  # no DISPLAY, no MPLBACKEND
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backend: agg use: [('Agg',)]" in result.stdout
    result = _run(code, MPLBACKEND="svg")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backend: svg use: []" in result.stdout


def test_all():
    assert set(plotting.__all__) == {"plot_similarity", "plot_topk", "image_for_display", "read_metrics",
                                     "plot_training_curves"}
