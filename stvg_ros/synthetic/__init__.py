"""A synthetic STVG world: a procedural clip generator with exact tubes, a small Qwen2.5-VL trained on
yes/no existence questions about it, and the paper's ablation benchmark in that world.

- ``generator``: ``generate_sample(seed, split)`` → frames + annotation; ``write_split`` → HC-STVG v2 files.
- ``questions``: the existence questions (the only training signal; never boxes or spans).
- ``model``: architecture, tokenizer, preprocessing, the training forward; ``train``: the one command.
- ``bench``: baselines and the grounding ablation on the test split; ``card``: the model card.

Heavy imports (torch, transformers) happen in ``model``/``train``/``bench`` only.
"""

__all__ = ["generate_sample", "write_split"]


def __getattr__(name: str):
    """``generate_sample``/``write_split`` from ``generator``, imported on first use: importing it here
    would make ``python -m stvg_ros.synthetic.generator`` (docs/synthetic.md's command) warn that the module was
    already in sys.modules (runpy's RuntimeWarning)."""
    if name in __all__:
        from . import generator

        return getattr(generator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
