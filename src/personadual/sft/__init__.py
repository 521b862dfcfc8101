"""Stage 1: dual-mode SFT on TRL's SFTTrainer."""
