"""Numerical parity with the official PyTorch code: `fixtures` (golden values of a few ACT steps, judged
against the float64 rounding floor) and `replay` (a whole reference training curve replayed).
"""
