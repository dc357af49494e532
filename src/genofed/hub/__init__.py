"""The hub: fans questions out to every node and merges what comes back."""
