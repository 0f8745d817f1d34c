import os

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "requirements.txt"), encoding="utf-8") as f:
    requirements = [line.strip() for line in f if line.strip() and not line.startswith("#")]

setup(
    name="clip",
    version="1.0.0",
    description="OpenAI's CLIP for MindSpore: a drop-in port of the `clip` package",
    long_description=open(os.path.join(here, "README.md"), encoding="utf-8").read()
    if os.path.exists(os.path.join(here, "README.md")) else "",
    long_description_content_type="text/markdown",
    packages=find_packages(exclude=["tests*", "benchmarks*", "tools*"]),
    package_data={"clip": ["bpe_simple_vocab_16e6.txt.gz", "open_clip/*.json"]},
    include_package_data=True,
    install_requires=requirements,
    # optional: figures (clip.plotting, the notebooks)
    extras_require={"plot": ["matplotlib>=3.7"], "notebooks": ["matplotlib>=3.7", "jupyter"]},
    python_requires=">=3.9",
    entry_points={"console_scripts": ["clip-ckpt-transform=clip.convert:main", "clip-mindspore=clip.cli:main"]},
    license="MIT",
)
