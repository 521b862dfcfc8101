"""Model factories: tiny local models for CPU runs and tests."""
