"""Convert OpenAI CLIP PyTorch weights to a MindSpore checkpoint, without PyTorch.

    python ckpt_transform.py --pth_path ViT-B-32.pt            # writes ViT-B-32.ckpt
    python ckpt_transform.py --pth_path ViT-B/32               # downloads, writes ./ViT-B-32.ckpt
    python ckpt_transform.py --pth_path model.pt --output out.ckpt

The logic lives in :mod:`clip.convert`.
"""
import sys

from clip.convert import main

if __name__ == "__main__":
    sys.exit(main())
