from .GDCN import GDCN
