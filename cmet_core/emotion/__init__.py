"""Emotions and targets: the emotion library, semantic vectors, timelines, following the voice, speech plans."""
