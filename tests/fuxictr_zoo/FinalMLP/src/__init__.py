from .FinalMLP import FinalMLP
