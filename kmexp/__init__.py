"""kmexp: parameter-efficient ConvNet training experiments.

Reproduces Kernel Modulation (Hu & Liu), model patches (Mudrakarta et al., "K for the
price of 1") and inter-layer kernel sharing (Azadbakht et al.) as Hydra + Lightning
experiments. A *method* is a set of trainable components (see ``kmexp.components``).
"""

__version__ = "0.1.0"
