"""Storage back-ends and the look-up indexes they query through."""
