from .AutoInt import AutoInt
