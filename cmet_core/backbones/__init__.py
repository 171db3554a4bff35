"""Generator backbones: what is specific to the network that renders the edited face (see `base`)."""
