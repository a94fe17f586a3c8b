"""Files: size- and depth-limited JSON reading, paths kept inside a root, atomic writes (`safe_io`); the base of expected failures (`errors.RunError`).
"""
