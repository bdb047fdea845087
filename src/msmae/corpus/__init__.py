"""Packed pose corpora for pre-training: float16 shards + presence bits + one index, read through
memory maps so that memory does not grow with the corpus."""
from msmae.corpus.store import CorpusError, PackedCorpus
from msmae.corpus.pack import CorpusWriter, PackSummary, pack_corpus, pack_sequences

__all__ = ["CorpusError", "CorpusWriter", "PackedCorpus", "PackSummary", "pack_corpus", "pack_sequences"]
