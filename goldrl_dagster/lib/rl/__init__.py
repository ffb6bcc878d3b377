"""Reinforcement learning: observation builder, cost model, trading env, training, loading."""
