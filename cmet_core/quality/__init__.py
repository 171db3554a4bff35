"""How good an output is: identity, lips, steadiness, emotion and faces, measured on sampled frames."""
