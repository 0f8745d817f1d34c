"""Convert OpenAI CLIP PyTorch weights to a MindSpore checkpoint, without PyTorch.

    python ckpt_transform.py --pth_path ViT-B-32.pt            # writes ViT-B-32.ckpt
    python ckpt_transform.py --pth_path ViT-B/32               # downloads, writes ./ViT-B-32.ckpt
    python ckpt_transform.py --pth_path model.pt --output out.ckpt
    python ckpt_transform.py --pth_path open_clip_pytorch_model.bin --model-name ViT-H-14   # open_clip's files
    python ckpt_transform.py --pth_path open_clip_model.safetensors --model-name ViT-B-32 --format safetensors

Every output carries a CRC; open_clip outputs record their architecture.

The logic lives in :mod:`clip.convert`.
"""
import sys

from clip.convert import main

if __name__ == "__main__":
    sys.exit(main())
