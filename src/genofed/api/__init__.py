"""The shared edge of the node's and the hub's HTTP apps: error rendering, JSON responses."""
