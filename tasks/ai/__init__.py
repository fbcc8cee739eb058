"""AI processing: analysis, briefs, highlights, relevance scores and insight de-duplication."""
