"""The CPU study that runs the whole pipeline on PersonaBench: `personadual demo` and `personadual rl-compare`."""
