"""Faces: detect (YuNet), landmark (face mesh), track, smooth, align (crop policies) and
composite (paste an edit back at full resolution). Import the submodules directly."""
