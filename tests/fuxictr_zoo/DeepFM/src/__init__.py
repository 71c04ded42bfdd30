from .DeepFM import DeepFM
