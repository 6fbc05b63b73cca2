"""Tasks, GLUE files, tokenised batches, models and scoring: the data every stage reads."""
