"""kustomize: overlay edits, builds and the image transformer (DESIGN.md §3).

``overlay`` edits an overlay's ``images:`` entries keeping the bytes around them, ``render``
runs the kustomize binary (bounded in time, refusing what leaves the repository), and
``imagetag`` is a tested port of kustomize's image transformer so a plan renders each overlay
once. Nothing here talks to a cluster, a forge or Git.
"""
