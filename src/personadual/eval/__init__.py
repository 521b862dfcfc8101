"""Evaluation: a protocol object, chosen once (`protocols`), runs items into `Prediction` rows
(`predictions`) by generation (`generation`) or by scoring the options (`choice`), in-process (`run`)
or through an endpoint (`endpoint`); pure metric functions (`metrics`), the verdicts drawn from them
(`verdicts`), the RL end-of-run check (`checks`), reports and plots."""
