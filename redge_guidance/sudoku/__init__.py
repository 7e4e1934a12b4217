"""Sudoku with a masked-diffusion prior: data, token layout, the shipped prior and the solver."""
