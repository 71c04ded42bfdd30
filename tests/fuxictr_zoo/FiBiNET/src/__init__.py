from .FiBiNET import FiBiNET
