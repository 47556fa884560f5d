"""File names of a trained PEFT model, one definition for the layer that writes the file (the suite:
a retrain's checkpoint, an exported folder) and the one that loads it (:mod:`spaces.pretrained`)."""

WEIGHTS_FILE = "weights.safetensors"  # the trainable weights (safetensors, the architecture in its metadata)
