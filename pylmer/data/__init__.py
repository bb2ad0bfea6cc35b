"""Frames (the columns a formula uses, checks, NA policy) and group coding."""
