"""Models: semantic IDs and their trie, the generative policy and its decoding, SASRec, item embeddings, and
the features and IDs of real datasets."""
