"""Expressions that move: an AU rig moves the face's landmarks, a dense warp moves the
full-resolution pixels, and the generator paints only what motion cannot make.

- :mod:`animator.motion.rig`: the AU rig (landmark displacement per unit of each AU, in a
  pose-normalised face frame) and how to apply it to a face in a frame;
- :mod:`animator.motion.warp`: landmark displacements -> a smooth dense motion field that is
  zero at the face's border -> the frame's face region warped at full resolution;
- :mod:`animator.motion.eyes`: lids that slide over a still eyeball, the eyeball a raised lid
  uncovers, the lash line of a shut eye;
- :mod:`animator.motion.mouth`: the inside of a mouth opened wider than the source's;
- :mod:`animator.motion.softness`: how soft the picture is, so the paint is no sharper;
- :mod:`animator.motion.rims`: spectacle rims found and kept where they are while the face
  moves behind them;
- :mod:`animator.motion.move`: the stage for one face, composing the above;
- :mod:`animator.motion.fit`: learning the rig from clips (landmarks + AU readings).
"""

# warp: the rig moves the face and the uncovered eyes and opened mouth are painted; the generator does not run (models
# trained on unwarped crops paint over the motion: docs/motion.md). warp+generator: the
# generator then paints on the moved face. none: the generator alone (the paper).
MOTION_MODES = ("warp", "warp+generator", "none")
WARP_ONLY_NOTE = ("motion warp: the AU rig moved the faces and painted uncovered eyes and opened mouths; the "
                  "generator did not run (--motion warp+generator runs it on the moved faces)")
