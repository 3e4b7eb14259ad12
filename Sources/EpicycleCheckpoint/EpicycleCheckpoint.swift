// HDF5 checkpoints of models, optimizer state and training state (see ../shared/DESIGN.md, "Checkpoint layout").
