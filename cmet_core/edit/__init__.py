"""The edit itself: the editor, the passes over an input, the one frame loop and its per-frame
stages, dubbing, previews."""
