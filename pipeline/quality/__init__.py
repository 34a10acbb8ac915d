"""Semantic quality: a fastText classifier trained on reference vs web text (train.py), documents
scored once per node (stage.py), percentile buckets over the whole corpus (buckets.py)."""
