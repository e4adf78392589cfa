"""Data: the built-in datasets, image folders (in memory or streamed), batched augmentation, the
search splits and the GPU-resident loader (`loaders`)."""
