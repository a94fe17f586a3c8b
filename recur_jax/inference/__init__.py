"""Using trained runs: `solve` (Sudoku puzzles from the command line or a file).
"""
