"""Masked image modeling with Vision Transformers: the package the course notebooks import.

Modules: ``data`` (CIFAR-10 and the embedded sample dataset), ``patches`` (patchify/unpatchify),
``masking`` (random, rows, columns, importance), ``metrics`` (MSE, PSNR, SSIM on composites),
``plots`` (pictures and ``save_fig``), ``runner`` (headless notebook runs).
"""

__version__ = "0.1.0"
