"""Saved models and the Hugging Face Hub: push/pull, model cards, GPT-2 weights both ways, and generating text
from a saved folder."""
