"""Running a model over items and scoring its responses: predictions, forced-mode runs, HAcc and the
modes' separation. Below both users: evaluation (`personadual.eval`) and the checks the training
stages run on val (SFT's separation checks and end-of-run check, RL's mode check)."""
