"""Data structures shared by the data, modeling and evaluation code."""

from .boxes import BoxMode

__all__ = ["BoxMode"]
