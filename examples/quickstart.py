"""OpenAI's README example on this library: which caption fits CLIP.png best?

    python examples/quickstart.py                        # OpenAI's ViT-B/32 (downloaded once)
    python examples/quickstart.py --model ViT-B-32.ckpt  # a local .ckpt or .pt
"""
import argparse
import os

import mindspore as ms
from PIL import Image

import clip

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B/32", help="a model name or a .ckpt/.pt path")
    parser.add_argument("--device", default=None, help="CPU, GPU or Ascend (default: the best available)")
    parser.add_argument("--mode", type=int, default=1, help="0: graph, 1: PyNative")
    parser.add_argument("--image", default=os.path.join(HERE, os.pardir, "CLIP.png"))
    args = parser.parse_args(argv)

    model, preprocess = clip.load(args.model, device=args.device, mode=args.mode)
    image = preprocess(Image.open(args.image)).unsqueeze(0)
    text = clip.tokenize(["a diagram", "a dog", "a cat"])

    image_features = model.encode_image(image)
    text_features = model.encode_text(text)
    print("features:", image_features.shape, text_features.shape)

    logits_per_image, logits_per_text = model(image, text)
    probs = ms.ops.softmax(logits_per_image, axis=-1).asnumpy()
    print("Label probs:", probs)  # OpenAI's ViT-B/32: about [[0.9927937  0.00421067 0.00299571]]


if __name__ == "__main__":
    main()
