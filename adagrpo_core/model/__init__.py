"""The generative policy: semantic IDs and their trie, the transformer, rollouts and beam search."""
