"""The shard format: read, verify and look into Megatron-Core `.bin/.idx` shards and pack's manifest.

Used by `crawlmill shards inspect|verify|sample|stats|adopt` and by training; it imports nothing of the
pipeline (pack, in crawlmill/pipeline/pack/, writes the shards), except adopt.py, which writes a
manifest for shards made elsewhere and reads the tokenizer with pack's loader when it is called.

- mmidx.py      the MMIDIDX `.idx` layout, and a reader that validates before it maps
- shardset.py   open a folder of shards (ours or any .bin/.idx pairs), inspect and verify it
- shardstats.py sample documents, length and token-frequency statistics
- manifest.py   read manifest.json: the Megatron blend, and the source of any token
- tokenbytes.py bytes of text per token id (byte-level BPE), for exact bits per byte
- adopt.py      check Megatron shards made elsewhere and write the manifest pack would have written
"""
