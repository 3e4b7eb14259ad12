// Dataset readers, views, augmentation with a strength knob, the batch loader and PNG output.
