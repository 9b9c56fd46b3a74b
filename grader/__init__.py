"""The grader: exercises, public and hidden checks, the sandbox, the gradebook, leaderboards.

Not built yet: see the grader issue. The package exists so the layout is complete.
"""
