"""Features learned elsewhere and computed from raw inputs: the pretrained notes encoder
(``features.text``; torch and sentence-transformers imported on first use)."""
