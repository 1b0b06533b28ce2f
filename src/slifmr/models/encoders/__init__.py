"""Graph encoders used by SLIF-MR and the graph baselines."""
