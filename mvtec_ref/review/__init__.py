"""Human review of sentences: a local web app (``app``), the decisions file (``store``), the
keys that make decisions survive rebuilds (``keys``), and applying them in a build (``apply``).

A decision is one JSON line in the reviews file, keyed by ``(image, target, text)``:

- ``image``: the image's path relative to the source root (``record["image_path"]``);
- ``target``: the target's pixels, ``"<h>x<w>:<sha1 of the union mask's COCO RLE>"``, or
  ``"<h>x<w>:empty"`` for a no-target ref; region ids are not used, so another seed, toolkit
  version or template set still finds the decision as long as the pixels are the same;
- ``text``: the sentence as written.

``decision`` is ``accept``, ``reject``, ``rewrite`` (``rewrite`` holds the new text, which
replaces the sentence; ``asserted`` is true when the checks refused it and the reviewer kept
it anyway) or ``clear`` (an undo: the sentence is unreviewed again). The latest line per key
wins, so two tabs writing the same file never corrupt it.
"""
