from .DCNv2 import DCNv2
