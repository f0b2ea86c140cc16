"""kmexp: parameter-efficient ConvNet training experiments, and a library.

Reproduces Kernel Modulation (Hu & Liu), model patches (Mudrakarta et al., "K for the
price of 1") and inter-layer kernel sharing (Azadbakht et al.) as Hydra + Lightning
experiments. A *method* is a set of trainable components (see ``kmexp.components``).

Library use (``kmexp.api``; names imported lazily, so ``python -m kmexp.train`` pays nothing)::

    import kmexp
    model = kmexp.create_backbone("torchvision", num_classes=10, model_name="resnet50")
    kmexp.modulate(model, kmexp.KMConfig())          # also SBPatchConfig, DWPatchConfig,
    kmexp.print_trainable_parameters(model)          # TinyTLConfig, LoRAConfig, BitFitConfig
    kmexp.save_patch(model, "task.safetensors")
    model = kmexp.load_patch("task.safetensors")     # rebuilds the base from the header
    kmexp.fold(model)                                # plain network, identical outputs
    kmexp.predict(model, images)                     # kmexp.eval: class probabilities
"""

__version__ = "0.1.0"

_API = (
    "BitFitConfig", "DWPatchConfig", "KMConfig", "LoRAConfig", "SBPatchConfig", "TinyTLConfig",
    "create_backbone", "fold", "load_patch", "modulate", "print_trainable_parameters", "save_patch",
    "trainable_parameters",
)
__all__ = [*_API, "predict"]


def __getattr__(name: str):
    if name in _API:
        from kmexp import api

        return getattr(api, name)
    if name == "predict":
        from kmexp.eval import predict

        return predict
    raise AttributeError(f"module 'kmexp' has no attribute {name!r}")
