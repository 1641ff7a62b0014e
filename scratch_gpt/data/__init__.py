"""Data for training: the book's sliding-window sampling (chapter 2), token files cached on disk, and adapters
for Hugging Face ``datasets``. Applications layer: imports the core, never the training or fine-tuning code."""
