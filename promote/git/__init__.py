"""The Git adapter: one outside system, Git, driven through GitPython (DESIGN.md §3).

``repo`` fetches, resolves, reads blobs and trees, exports a tree, builds commits and pushes
with compare-and-swap; ``archive`` unpacks an exported tree safely (no links, nothing outside
the destination). Callers get our dataclasses (``CommitInfo``, ``Identity``), never library
objects, and never touch the user's index or worktree through here.
"""
