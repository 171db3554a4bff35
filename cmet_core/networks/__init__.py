"""The networks other than a backbone: the C-MET connector, Audio2Lip, the GFPGAN restorer,
emotion2vec+, and how they run."""
