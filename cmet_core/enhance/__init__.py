"""HD faces: the edited face restored at the frame's own resolution (GFPGAN v1.4, aligned, steady, batched).

`options` (the user's choice, no torch) is imported by the API; the other modules only by the pipeline.
"""
