from .MaskNet import MaskNet
