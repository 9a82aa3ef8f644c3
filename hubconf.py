"""torch.hub entry points of videoattn: a trained model in one line.

    import torch
    model = torch.hub.load("PATH/TO/videoattn", "model", checkpoint="tsm_demo", source="local")
    clip = model.preprocess.read("video.mp4")            # (1, T, 3, S, S): as tools/infer.py makes it
    top5 = model(clip).softmax(-1)[0].topk(5)
    print([model.classes[i] for i in top5.indices])

``checkpoint`` is a shareable model folder (``tools/export.py --format folder``: model.safetensors +
config.json + README.md), any model folder, or a ``.pth`` checkpoint of ``tools/train.py`` /
``tools/convert_checkpoint.py``. It is read like every tool reads it: safetensors and JSON, or
``torch.load(weights_only=True)`` with an allowlist: no code runs from the file (``trust=True``
opts in for a ``.pth`` that pickles more, as ``--trust-checkpoint`` does). Needs this repository's
environment (``uv sync``); see README, "Sharing a model".
"""

dependencies = ["torch", "torchvision"]


def model(checkpoint: str, *, trust: bool = False):
    """The model of ``checkpoint`` in eval mode on the CPU, with ``model.classes`` (the class names,
    index = logit) and ``model.preprocess`` (``.read(VIDEO)`` -> the ``(1, T, 3, S, S)`` clip;
    ``(frames)``: ``(T, 3, H, W)`` uint8 frames of ``.indices(num_frames)`` -> the clip; ``.sampling``
    and ``.transform``: the settings)."""
    from videoattn.share import load_shared

    return load_shared(checkpoint, trust=trust)
