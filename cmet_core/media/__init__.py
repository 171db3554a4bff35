"""Media in and out: video through PyAV, audio through PyAV + soxr."""
