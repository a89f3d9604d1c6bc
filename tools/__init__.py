"""Repository tools (not shipped in the image): tools/render.py renders the kustomizations."""
