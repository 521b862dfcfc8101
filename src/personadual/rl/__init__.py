"""Stage 2: DualGRPO -- pure advantage estimators, rewards, and a thin TRL GRPOTrainer subclass."""
