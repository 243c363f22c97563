"""Local sandboxes: bubblewrap jails running real Node, with cgroup or rlimit caps."""
