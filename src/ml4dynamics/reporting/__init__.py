"""What a person reads: the results page and README tables, figures, the experiments table."""
