"""The CT analysis engine: a scan in, one verdict per series out (see `inference.analyzer.Analyzer`)."""
