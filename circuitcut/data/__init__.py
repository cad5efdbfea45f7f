"""Text corpora and knowledge graphs, with offline defaults shipped in ``files/``."""
